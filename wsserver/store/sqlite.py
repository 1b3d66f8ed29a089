"""The embedded durable event log (one node, zero configuration): SQLite in WAL mode with
``synchronous=FULL``, written by one writer task that group-commits concurrent appends.

An append is acknowledged only after its transaction committed (fsync'd WAL), so a crash
(kill -9, power loss) loses no acknowledged event. Group commit: the writer takes every append
waiting at the time into one transaction, so one fsync serves many publishers. New events are
announced through ``on_commit`` (once per commit, with the commit's new events in seq order),
from the writer task, before any waiter resumes.
Retention is enforced by a trimming task in small transactions that interleave with appends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import attrs
import trio

from wsserver.config import Retention
from wsserver.protocol import encode_event
from wsserver.store.base import (
    AppendQueue,
    AppendRequest,
    AppendResult,
    ChannelPosition,
    PendingAppend,
    Snapshot,
    SnapshotAhead,
    StoredEvent,
    StoreStatistics,
    StoreUnavailable,
)

log = logging.getLogger("wsserver.store")

#: Appends waiting for the writer; publishers block (backpressure) beyond this.
WRITE_QUEUE: Final = 8192
#: Most appends committed in one transaction (one fsync).
MAX_BATCH: Final = 1024
#: Channels trimmed per trimming transaction (keeps each write-lock hold short).
TRIM_CHUNK: Final = 200
#: SQLite page cache per connection (KiB).
CACHE_KIB: Final = 32 * 1024
#: WAL pages after which a commit checkpoints by itself (a fallback: the checkpointer runs first).
AUTOCHECKPOINT_PAGES: Final = 50_000
#: Seconds between background checkpoints.
CHECKPOINT_INTERVAL: Final = 1.0
#: Publish ids forgotten per trimming transaction.
TRIM_IDS: Final = 10_000
#: Channels whose head/generation the writer keeps in memory.
HEAD_CACHE: Final = 100_000
#: Seconds between write probes while writes fail.
PROBE_INTERVAL: Final = 1.0
#: Values bound per multi-row INSERT (SQLite allows 32,766).
INSERT_PARAMETERS: Final = 12_000
#: Publish ids looked up per statement (SQLite allows 32,766 bound parameters).
IDEM_LOOKUP_CHUNK: Final = 500

#: The log's schema (version 1). Events and idempotency records are rowid tables with their keys
#: in unique indexes: rows are appended in commit order and only the small index entries land at
#: their sorted places. As WITHOUT ROWID tables (version 0, the first wave) every random publish
#: id and every interleaved channel dirtied a page of full rows: a 255-event group commit cost
#: ~27 ms of SQLite CPU, now ~10 ms (bench/results/profile.md).
SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    name TEXT PRIMARY KEY, generation INTEGER NOT NULL DEFAULT 0, head_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    channel TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,
    ts INTEGER NOT NULL, frame BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_seq ON events (channel, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL, key TEXT NOT NULL, channel TEXT NOT NULL, seq INTEGER NOT NULL,
    epoch TEXT NOT NULL, event_id TEXT NOT NULL, ts INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS idempotency_by_key ON idempotency (scope, key);
CREATE INDEX IF NOT EXISTS idempotency_by_time ON idempotency (ts);
CREATE TABLE IF NOT EXISTS snapshots (
    channel TEXT PRIMARY KEY, seq INTEGER NOT NULL, generation INTEGER NOT NULL,
    state BLOB NOT NULL, ts INTEGER NOT NULL
) WITHOUT ROWID;
"""


def _migrate(con: sqlite3.Connection) -> None:
    """Brings a log of schema version 0 (WITHOUT ROWID events and idempotency records) to the
    current one, in one transaction: nothing is lost, and a failure leaves the old log as it was."""
    if con.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.execute("BEGIN IMMEDIATE")
    try:
        if "events" in tables:
            log.warning("migrating the event log in %s to schema %d (once)", con, SCHEMA_VERSION)
            con.execute("ALTER TABLE events RENAME TO events_v0")
            con.execute("ALTER TABLE idempotency RENAME TO idempotency_v0")
            con.execute("DROP INDEX IF EXISTS idempotency_by_channel")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)
        if "events" in tables:
            con.execute("INSERT INTO events (channel, seq, id, type, ts, frame) "
                        "SELECT channel, seq, id, type, ts, frame FROM events_v0 ORDER BY channel, seq")
            con.execute("INSERT INTO idempotency (scope, key, channel, seq, epoch, event_id, ts) "
                        "SELECT scope, key, channel, seq, epoch, event_id, ts FROM idempotency_v0")
            con.execute("DROP TABLE events_v0")
            con.execute("DROP TABLE idempotency_v0")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def _insert_rows(con: sqlite3.Connection, head: str, rows: list[tuple], tail: str = "") -> None:
    """Inserts ``rows`` with a few multi-row statements instead of ``executemany``: the sqlite3
    module gives the GIL back around every statement step, so a row-by-row insert in the writer
    thread re-queues for the GIL once per row behind a busy event loop (up to the 5 ms switch
    interval each time): a 200-event group commit took ~100 ms. One step per chunk keeps a group
    commit close to its fsync."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, INSERT_PARAMETERS // width)
    placeholder = "(" + ",".join("?" * width) + ")"
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        con.execute(head + " " + ",".join([placeholder] * len(chunk)) + tail, [v for row in chunk for v in row])


class DataDirLock:
    """An exclusive lock on the event log, held while a server (or a maintenance command) uses
    it: a second server on the same data directory, or `wsserver rotate-epoch` under a running
    one, is refused with a plain message instead of corrupting the log's in-memory state."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise StoreUnavailable(
                f"the event log in {db_path.parent} is in use by another wsserver process (stop it first)"
            ) from None

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


@attrs.frozen
class EpochRotation:
    channel: str
    old_epoch: str
    new_epoch: str
    events: int


def rotate_epochs(
    path: str | Path, channels: list[str] | None, *, progress: Callable[[EpochRotation], None] = lambda r: None
) -> list[EpochRotation]:
    """Gives ``channels`` (None: every channel) a new epoch in the event log at ``path``, with
    the server stopped. For after a restore of the data directory from a backup: the restored
    head may be behind seqs clients already saw under the old epoch, and reusing them would hand
    those clients different events under numbers they hold. With a new epoch they get snapshot or
    reset; the restored events stay readable (their frames are rewritten to the new epoch), and
    a stored snapshot stays valid (it is as consistent with the restored events as before).

    Raises:
        StoreUnavailable: the log is in use (a server is running) or cannot be opened.
    """
    path = Path(path)
    if not path.exists():
        raise StoreUnavailable(f"no event log at {path}")
    lock = DataDirLock(path)
    con = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        nonce = con.execute("SELECT value FROM meta WHERE key = 'nonce'").fetchone()[0]
        known = dict(con.execute("SELECT name, generation FROM channels").fetchall())
        names = sorted(known) if channels is None else channels
        unknown = [name for name in names if name not in known]
        if unknown:
            raise StoreUnavailable(f"no such channel in the event log: {', '.join(unknown[:5])}")
        done = []
        for name in names:
            old, new = f"{nonce}-{known[name]}", f"{nonce}-{known[name] + 1}"
            old_field, new_field = f'"epoch":"{old}"'.encode(), f'"epoch":"{new}"'.encode()
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("UPDATE channels SET generation = generation + 1 WHERE name = ?", (name,))
                con.execute("UPDATE snapshots SET generation = generation + 1 WHERE channel = ?", (name,))
                rows = con.execute("SELECT seq, frame FROM events WHERE channel = ?", (name,)).fetchall()
                con.executemany(
                    "UPDATE events SET frame = ? WHERE channel = ? AND seq = ?",
                    [(bytes(frame).replace(old_field, new_field, 1), name, seq) for seq, frame in rows],
                )
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            rotation = EpochRotation(name, old, new, len(rows))
            progress(rotation)
            done.append(rotation)
        return done
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot rotate epochs in {path}: {exc}") from exc
    finally:
        con.close()
        lock.release()


class SqliteStore:
    """See the module docstring; the contract is in ``wsserver.store.base``.

    Args:
        path: the database file (its directory is created).
        retention: channel → Retention (the config's per-pattern lookup).
        on_commit: called once per commit with its new events, in seq order, from the writer task.
        wall_clock: seconds since the Unix epoch, for retention by age.
        trim_interval: seconds between retention sweeps.
        id_ttl: seconds publish ids are remembered: the longest history ttl of any channel.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention: Callable[[str], Retention],
        on_commit: Callable[[list[StoredEvent]], None],
        wall_clock: Callable[[], float] = time.time,
        trim_interval: float = 5.0,
        id_ttl: float = 72 * 3600.0,
    ) -> None:
        self.path = Path(path)
        self._id_ttl = id_ttl
        self._retention = retention
        self.on_commit = on_commit
        self._wall_clock = wall_clock
        self._trim_interval = trim_interval
        self._queue = AppendQueue(WRITE_QUEUE)
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        self._lock: DataDirLock | None = None
        self._wcon: sqlite3.Connection | None = None
        self._rcon: sqlite3.Connection | None = None
        self._nonce = ""
        #: channel -> (head_seq, generation, newest publish time); writer thread only
        self._heads: dict[str, tuple[int, int, int]] = {}
        self._appended = self._duplicates = self._batches = self._trimmed = 0
        self._open_ok = False
        #: why writes fail right now ("" while they succeed); cleared by the next good write
        self.problem = ""

    @property
    def healthy(self) -> bool:
        """Open, and the last write (append or probe) succeeded."""
        return self._open_ok and not self.problem

    def _write_failed(self, exc: BaseException) -> None:
        reason = f"the event log refuses writes: {exc}"
        if reason != self.problem:
            log.error("%s (publishes get 503 until a write succeeds again)", reason)
        self.problem = reason

    def _write_ok(self) -> None:
        if self.problem:
            log.info("the event log accepts writes again")
        self.problem = ""

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Opens the database and runs the writer and the trimmer until cancelled."""
        await trio.to_thread.run_sync(self._open)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                nursery.start_soon(self._trimmer)
                nursery.start_soon(self._checkpointer)
                nursery.start_soon(self._prober)
                self._open_ok = True
                task_status.started()
        finally:
            self._open_ok = False
            with trio.CancelScope(shield=True):
                # Readers (connections, the HTTP API) live outside this task: wait until no thread
                # uses a connection before closing it (closing under a running query crashes).
                async with self._read_limiter, self._write_limiter:
                    await trio.to_thread.run_sync(self._close)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = DataDirLock(self.path)
            self._wcon = self._connect()
            _migrate(self._wcon)
            row = self._wcon.execute("SELECT value FROM meta WHERE key = 'nonce'").fetchone()
            if row is None:
                # A new log: epochs of this database differ from those of any lost one.
                self._nonce = secrets.token_hex(4)
                self._wcon.execute("INSERT INTO meta (key, value) VALUES ('nonce', ?)", (self._nonce,))
            else:
                self._nonce = row[0]
            self._rcon = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the event log at {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        # Checkpoints (copying the WAL into the database) run beside the commits, from the read
        # connection, every CHECKPOINT_INTERVAL: a commit that had to checkpoint on its own (at
        # the default 1,000 pages) stalled every publisher of that group commit behind it.
        con.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        return con

    def _close(self) -> None:
        for con in (self._rcon, self._wcon):
            if con is not None:
                con.close()
        self._rcon = self._wcon = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _epoch(self, generation: int) -> str:
        return f"{self._nonce}-{generation}"

    # ------------------------------------------------------------------ appends

    async def append(self, request: AppendRequest) -> AppendResult:
        """Durably appends (or finds the original of a retried id); see the contract."""
        if not self._open_ok:
            raise StoreUnavailable("the event log is not open")
        return await self._queue.submit(request)

    def append_nowait(self, request: AppendRequest) -> PendingAppend:
        if not self._open_ok:
            raise StoreUnavailable("the event log is not open")
        return self._queue.enqueue(request)

    async def _writer(self) -> None:
        """Group commits, one at a time, in three steps: the writer thread opens the transaction
        and reads what the batch needs (publish ids already recorded, channel heads not cached);
        this task (the event loop) assigns seqs and builds every row and frame; the writer thread
        inserts them with a few statements and commits (fsync). The thread runs SQLite only: any
        Python it ran had to win the GIL back from a busy event loop, over and over (a 255-event
        commit took ~100 ms of waiting; bench/results/profile.md)."""
        async for batch in self._queue.batches(MAX_BATCH):
            try:
                known, states = await trio.to_thread.run_sync(self._begin, batch, limiter=self._write_limiter)
                rows, results, staged = self._build(batch, known, states)
                await trio.to_thread.run_sync(self._finish, rows, limiter=self._write_limiter)
            except (sqlite3.Error, OSError) as exc:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._rollback, limiter=self._write_limiter)
                self._write_failed(exc)
                log.warning("event log write failed; %d publishes refused (nothing acknowledged): %s", len(batch), exc)
                self._heads.clear()
                for pending in batch:
                    pending.fail(StoreUnavailable(f"event log write failed: {exc}"))
                continue
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._rollback, limiter=self._write_limiter)
                raise
            if len(self._heads) > HEAD_CACHE:
                self._heads.clear()
            self._heads.update(staged)
            self._write_ok()
            self._batches += 1
            events = [event for _result, event in results if event is not None]
            self._appended += len(events)
            self._duplicates += len(results) - len(events)
            if events:
                self.on_commit(events)  # announced before any publisher hears back
            for pending, (result, _event) in zip(batch, results, strict=True):
                pending.succeed(result)

    def _begin(self, batch: list[PendingAppend]) -> tuple[dict[tuple[str, str], AppendResult], dict[str, tuple[int, int, int]]]:
        """Writer thread: opens the transaction; the publish ids of the batch already recorded and
        the state of every channel of the batch not in the cache."""
        con = self._wcon
        assert con is not None
        con.execute("BEGIN IMMEDIATE")
        known = self._known_ids(con, batch)
        states = {}
        for channel in {p.request.channel for p in batch}:
            if channel not in self._heads:
                states[channel] = self._channel_state(con, channel)
        return known, states

    def _build(
        self, batch: list[PendingAppend], known: dict[tuple[str, str], AppendResult],
        states: dict[str, tuple[int, int, int]],
    ) -> tuple[tuple[list, list, list], list[tuple[AppendResult, StoredEvent | None]], dict[str, tuple[int, int, int]]]:
        """Event loop, no I/O: seqs, publish times, frames, rows and results of the batch."""
        staged: dict[str, tuple[int, int, int]] = {}
        out: list[tuple[AppendResult, StoredEvent | None]] = []
        event_rows: list[tuple] = []
        idem_rows: list[tuple] = []
        heads = self._heads
        for pending in batch:
            req = pending.request
            idem = None if req.idem_key is None else (req.idem_scope, req.idem_key)
            if idem is not None and idem in known:
                out.append((known[idem], None))
                continue
            head, generation, last_ts = staged.get(req.channel) or heads.get(req.channel) or states[req.channel]
            seq = head + 1
            epoch = self._epoch(generation)
            # Publish times never go backwards within a channel (the wall clock may step back):
            # retention by age then always trims a prefix of the log.
            ts = max(req.timestamp, last_ts)
            frame = encode_event(
                event_type=req.event_type,
                event_id=req.event_id,
                timestamp=ts,
                channel=req.channel,
                seq=seq,
                epoch=epoch,
                data_json=req.data_json,
            )
            event_rows.append((req.channel, seq, req.event_id, req.event_type, ts, frame))
            if idem is not None:
                idem_rows.append((req.idem_scope, req.idem_key, req.channel, seq, epoch, req.event_id, ts))
                known[idem] = AppendResult(req.channel, seq, epoch, req.event_id, duplicate=True)  # a retry in this batch
            staged[req.channel] = (seq, generation, ts)
            event = StoredEvent(req.channel, seq, epoch, req.event_id, req.event_type, ts, frame)
            out.append((AppendResult(req.channel, seq, epoch, req.event_id, duplicate=False), event))
        channel_rows = [(name, gen, seq) for name, (seq, gen, _ts) in staged.items()]
        return (event_rows, idem_rows, channel_rows), out, staged

    def _finish(self, rows: tuple[list, list, list]) -> None:
        """Writer thread: the batch's rows in a few statements, then COMMIT (the fsync)."""
        con = self._wcon
        assert con is not None
        event_rows, idem_rows, channel_rows = rows
        _insert_rows(con, "INSERT INTO events (channel, seq, id, type, ts, frame) VALUES", event_rows)
        _insert_rows(con, "INSERT INTO idempotency (scope, key, channel, seq, epoch, event_id, ts) VALUES", idem_rows)
        _insert_rows(con, "INSERT INTO channels (name, generation, head_seq) VALUES", channel_rows,
                     " ON CONFLICT (name) DO UPDATE SET head_seq = excluded.head_seq")
        con.execute("COMMIT")

    def _rollback(self) -> None:
        con = self._wcon
        if con is not None and con.in_transaction:
            con.execute("ROLLBACK")

    def _channel_state(self, con: sqlite3.Connection, channel: str) -> tuple[int, int, int]:
        """(head seq, generation, publish time of the head event or 0) of ``channel``."""
        state = self._heads.get(channel)
        if state is None:
            row = con.execute("SELECT head_seq, generation FROM channels WHERE name = ?", (channel,)).fetchone()
            if row is None:
                return (0, 0, 0)
            ts = con.execute("SELECT ts FROM events WHERE channel = ? AND seq = ?", (channel, row[0])).fetchone()
            state = (row[0], row[1], ts[0] if ts else 0)
        return state

    def _known_ids(self, con: sqlite3.Connection, batch: list[PendingAppend]) -> dict[tuple[str, str], AppendResult]:
        """The batch's publish ids already recorded, looked up in a few statements per scope:
        ``scope = ? AND key IN (…)`` searches the primary key (a row-value ``(scope, key) IN
        (VALUES …)`` made SQLite scan the whole table on every commit, so publishing slowed
        down as the idempotency records grew)."""
        by_scope: dict[str, set[str]] = {}
        for p in batch:
            if p.request.idem_key is not None:
                by_scope.setdefault(p.request.idem_scope, set()).add(p.request.idem_key)
        known: dict[tuple[str, str], AppendResult] = {}
        for scope, keys in by_scope.items():
            listed = list(keys)
            for i in range(0, len(listed), IDEM_LOOKUP_CHUNK):
                chunk = listed[i : i + IDEM_LOOKUP_CHUNK]
                rows = con.execute(
                    "SELECT key, channel, seq, epoch, event_id FROM idempotency WHERE scope = ? AND key IN ("
                    + ",".join("?" * len(chunk)) + ")",
                    [scope, *chunk],
                ).fetchall()
                for key, channel, seq, epoch, event_id in rows:
                    known[(scope, key)] = AppendResult(channel, seq, epoch, event_id, duplicate=True)
        return known

    async def _prober(self) -> None:
        """While writes fail (disk full, I/O error), tries a tiny write every PROBE_INTERVAL, so
        that health turns green again by itself once the disk has room, even with no publishes."""
        while True:
            await trio.sleep(PROBE_INTERVAL)
            if not self.problem:
                continue
            try:
                await trio.to_thread.run_sync(self._probe_write, limiter=self._write_limiter)
            except (sqlite3.Error, OSError) as exc:
                self._write_failed(exc)
            else:
                self._write_ok()

    def _probe_write(self) -> None:
        con = self._wcon
        assert con is not None
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(
                "INSERT INTO meta (key, value) VALUES ('probe', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (secrets.token_hex(8),),
            )
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ reads

    async def _read(self, fn, *args):
        if self._rcon is None:
            raise StoreUnavailable("the event log is not open")
        try:
            return await trio.to_thread.run_sync(fn, self._rcon, *args, limiter=self._read_limiter)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"event log read failed: {exc}") from exc

    async def position(self, channel: str) -> ChannelPosition:
        return await self._read(self._position, channel)

    def _position(self, con: sqlite3.Connection, channel: str) -> ChannelPosition:
        con.execute("BEGIN")
        try:
            row = con.execute("SELECT head_seq, generation FROM channels WHERE name = ?", (channel,)).fetchone()
            head, generation = (row[0], row[1]) if row else (0, 0)
            oldest = con.execute("SELECT MIN(seq) FROM events WHERE channel = ?", (channel,)).fetchone()[0] or 0
        finally:
            con.execute("COMMIT")
        return ChannelPosition(channel, self._epoch(generation), head, oldest)

    async def read_after(
        self, channel: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> list[StoredEvent]:
        return await self._read(self._read_after, channel, after_seq, limit, max_bytes)

    def _read_after(
        self, con: sqlite3.Connection, channel: str, after_seq: int, limit: int, max_bytes: int | None
    ) -> list[StoredEvent]:
        con.execute("BEGIN")
        try:
            row = con.execute("SELECT generation FROM channels WHERE name = ?", (channel,)).fetchone()
            epoch = self._epoch(row[0] if row else 0)
            cursor = con.execute(
                "SELECT seq, id, type, ts, frame FROM events WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?",
                (channel, after_seq, limit),
            )
            events: list[StoredEvent] = []
            size = 0
            for seq, id_, type_, ts, frame in cursor:
                if max_bytes is not None and events and size + len(frame) > max_bytes:
                    break
                size += len(frame)
                events.append(StoredEvent(channel, seq, epoch, id_, type_, ts, frame))
            cursor.close()
        finally:
            con.execute("COMMIT")
        return events

    async def read_one(self, channel: str, seq: int) -> StoredEvent | None:
        events = await self.read_after(channel, seq - 1, 1)
        return events[0] if events and events[0].seq == seq else None

    # ------------------------------------------------------------------ snapshots

    async def put_snapshot(self, channel: str, seq: int, state_json: bytes) -> Snapshot:
        try:
            return await trio.to_thread.run_sync(
                self._put_snapshot, channel, seq, state_json, limiter=self._write_limiter
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"snapshot write failed: {exc}") from exc

    def _put_snapshot(self, channel: str, seq: int, state_json: bytes) -> Snapshot:
        con = self._wcon
        assert con is not None
        head, generation, _ts = self._channel_state(con, channel)
        if seq > head:
            raise SnapshotAhead(f"snapshot seq {seq} is beyond the channel's head seq {head}")
        ts = int(self._wall_clock() * 1000)
        con.execute(
            "INSERT INTO snapshots (channel, seq, generation, state, ts) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (channel) DO UPDATE SET seq = excluded.seq, generation = excluded.generation,"
            " state = excluded.state, ts = excluded.ts",
            (channel, seq, generation, state_json, ts),
        )
        return Snapshot(channel, seq, self._epoch(generation), state_json, ts)

    async def get_snapshot(self, channel: str) -> Snapshot | None:
        return await self._read(self._get_snapshot, channel)

    def _get_snapshot(self, con: sqlite3.Connection, channel: str) -> Snapshot | None:
        row = con.execute("SELECT seq, generation, state, ts FROM snapshots WHERE channel = ?", (channel,)).fetchone()
        if row is None:
            return None
        return Snapshot(channel, row[0], self._epoch(row[1]), row[2], row[3])

    # ------------------------------------------------------------------ retention

    async def _trimmer(self) -> None:
        while True:
            await trio.sleep(self._trim_interval)
            try:
                await self.trim()
            except (sqlite3.Error, OSError) as exc:
                log.error("retention sweep failed (will retry): %s", exc)

    async def _checkpointer(self) -> None:
        """Copies the WAL into the database now and then, on the read connection (synchronous=FULL:
        the database is fsync'd before the WAL may be reused), without holding up commits."""
        while True:
            await trio.sleep(CHECKPOINT_INTERVAL)
            try:
                await self._read(lambda con: con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
            except StoreUnavailable as exc:
                log.warning("checkpoint failed (will retry): %s", exc)

    async def trim(self) -> int:
        """One retention sweep over every channel, in short transactions. Returns rows deleted."""
        after = ""
        deleted = 0
        while True:
            count, after = await trio.to_thread.run_sync(self._trim_chunk, after, limiter=self._write_limiter)
            deleted += count
            if after is None:
                break
        while await trio.to_thread.run_sync(self._forget_ids, limiter=self._write_limiter) == TRIM_IDS:
            pass
        self._trimmed += deleted
        return deleted

    def _forget_ids(self) -> int:
        """Forgets publish ids older than the longest history ttl of any channel (CONTRACT §4: an id
        is remembered for at least its channel's ttl; by time alone, the index is append-only)."""
        con = self._wcon
        assert con is not None
        cutoff = int(self._wall_clock() * 1000) - int(self._id_ttl * 1000)
        con.execute("BEGIN IMMEDIATE")
        try:
            n = con.execute(
                "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency WHERE ts < ? LIMIT ?)",
                (cutoff, TRIM_IDS),
            ).rowcount
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return n

    def _trim_chunk(self, after: str) -> tuple[int, str | None]:
        con = self._wcon
        assert con is not None
        now_ms = int(self._wall_clock() * 1000)
        rows = con.execute(
            "SELECT name, head_seq FROM channels WHERE name > ? ORDER BY name LIMIT ?", (after, TRIM_CHUNK)
        ).fetchall()
        if not rows:
            return 0, None
        deleted = 0
        con.execute("BEGIN IMMEDIATE")
        try:
            for name, head in rows:
                retention = self._retention(name)
                cutoff = now_ms - int(retention.ttl * 1000)
                # Only ever a prefix: up to the count bound, and up to the first event still young
                # (never `ts < cutoff` row by row: after the clock stepped back that punched holes).
                young = con.execute(
                    "SELECT seq FROM events WHERE channel = ? AND ts >= ? ORDER BY seq LIMIT 1", (name, cutoff)
                ).fetchone()
                upto = max(head - retention.max_events, (young[0] - 1) if young else head)
                deleted += con.execute("DELETE FROM events WHERE channel = ? AND seq <= ?", (name, upto)).rowcount
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return deleted, (rows[-1][0] if len(rows) == TRIM_CHUNK else None)

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(self._appended, self._duplicates, self._batches, self._trimmed)
