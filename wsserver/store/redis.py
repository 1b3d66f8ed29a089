"""The multi-node event log on Redis: per channel a seq/epoch hash, a Stream of events (entry id
``<seq>-0``), idempotency records and a snapshot, all in the channel's hash slot.

One Lua script appends a batch of one channel's events atomically: epoch check → idempotency
check → seq → XADD → idempotency record (TTL = history ttl) → PUBLISH/SPUBLISH, so every node
sees one order and every event is announced before its append is acknowledged. A writer task
groups waiting appends by channel and sends one script call per channel in one pipeline.

Epochs are tied to the Redis server's identity: the hash records the ``run_id`` of the server
that last wrote the channel; when it differs (restart, failover) or the hash is gone (data lost,
evicted), the next append starts a new epoch with a fresh random name and an empty log, so a
seq is never reused under one epoch even if Redis lost acknowledged writes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import orjson
import trio
from coredis.exceptions import NoScriptError, RedisError, ResponseError

from wsserver.config import Retention
from wsserver.redis_link import RedisLink, channel_key, pubsub_channel
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

log = logging.getLogger("wsserver.store.redis")

#: Appends waiting for the writer; publishers block (backpressure) beyond this.
WRITE_QUEUE: Final = 8192
#: Most appends taken from the queue into one pipeline.
MAX_BATCH: Final = 1024
#: Most events of one channel in one script call (bounds the time Redis is busy with one call).
MAX_SCRIPT_EVENTS: Final = 128
#: Pipelines in flight at once (each waits a round trip; more in flight, more throughput).
MAX_IN_FLIGHT: Final = 8
#: Seconds Redis keeps the epoch record of a channel that was read (subscribed) but never
#: written; every read while the channel is watched (the backplane audits every few seconds)
#: extends it, so it outlives its subscribers by at most this.
UNWRITTEN_TTL: Final = 3600.0
#: Stream entries fetched per XRANGE when a read is bounded in bytes.
READ_ROUND: Final = 64
#: Seconds between PINGs while Redis is failing.
PROBE_INTERVAL: Final = 0.5
#: Seconds an append may take before it is refused with StoreUnavailable (publisher gets 503).
APPEND_TIMEOUT: Final = 3.0

_RUN_ID: Final = "local rid = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')\n"

#: KEYS: meta, log, snapshot, idempotency records…  ARGV: pubsub channel, publish command,
#: candidate epoch, now ms, ttl ms, max events, then per event: idempotency KEYS index (0: none),
#: event id, type, timestamp, frame head (up to `"timestamp":`), frame middle (from `,"channel":`
#: up to `"seq":`), frame tail (from `,"payload":`). Publish times are kept non-decreasing per
#: channel (meta `ts`), so that trimming by age is always a trim of the log's front.
APPEND_LUA: Final = (
    _RUN_ID
    + r"""
local meta, log = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'seq', 'epoch', 'rid')
local seq, epoch = tonumber(state[1]), state[2]
if (not seq) or (not epoch) or state[3] ~= rid then
  -- never written, data lost, or another server (restart, failover) since the last write
  epoch = ARGV[3]
  seq = 0
  redis.call('DEL', log, KEYS[3])
  redis.call('HSET', meta, 'epoch', epoch)
end
redis.call('PERSIST', meta)  -- written: no longer the expiring record of an unwritten channel
local last_ts = tonumber(redis.call('HGET', meta, 'ts')) or 0
local out = {epoch}
local count = (#ARGV - 6) / 7
for i = 0, count - 1 do
  local b = 7 + i * 7
  local k = tonumber(ARGV[b])
  local prior = false
  if k > 0 then prior = redis.call('GET', KEYS[k]) end
  if prior then
    out[#out + 1] = prior
  else
    seq = seq + 1
    local s = string.format('%d', seq)
    local ts = tonumber(ARGV[b + 3])
    if ts < last_ts then ts = last_ts end
    last_ts = ts
    local t = string.format('%d', ts)
    local frame = ARGV[b + 4] .. t .. ARGV[b + 5] .. s .. ',"epoch":"' .. epoch .. '"' .. ARGV[b + 6]
    local blob = s .. '\n' .. epoch .. '\n' .. t .. '\n' .. ARGV[b + 1] .. '\n' .. ARGV[b + 2] .. '\n' .. frame
    redis.call('XADD', log, 'MAXLEN', '~', ARGV[6], s .. '-0', 'd', blob)
    if k > 0 then
      redis.call('SET', KEYS[k], s .. ' ' .. epoch .. ' ' .. ARGV[b + 1], 'PX', ARGV[5])
    end
    redis.call(ARGV[2], ARGV[1], blob)
    out[#out + 1] = seq
  end
end
redis.call('HSET', meta, 'seq', string.format('%d', seq), 'rid', rid, 'ts', string.format('%d', last_ts))
-- retention by age: drop a few expired events from the front per call; idle logs expire whole
local cutoff = tonumber(ARGV[4]) - tonumber(ARGV[5])
for _ = 1, 4 do
  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if not first then break end
  local s, ts = string.match(first[2][2], '^(%d+)\n[^\n]*\n(%d+)\n')
  if tonumber(ts) >= cutoff then break end
  redis.call('XTRIM', log, 'MINID', string.format('%d-0', tonumber(s) + 1))
end
redis.call('PEXPIRE', log, ARGV[5])
return out
"""
)

#: KEYS: meta, log, snapshot.  ARGV: candidate epoch, ms to keep an unwritten channel's record.
#: → {head seq, epoch, oldest stored seq}. Names the epoch of a channel never written, so that
#: its subscribers keep it when the first event comes; that record expires (refreshed by each
#: read while someone watches the channel), so reading positions never leaves lasting keys.
POSITION_LUA: Final = r"""
local meta, log = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'seq', 'epoch')
if not state[2] then
""" + "  " + _RUN_ID + r"""
  redis.call('DEL', log, KEYS[3])
  redis.call('HSET', meta, 'seq', '0', 'epoch', ARGV[1], 'rid', rid)
  redis.call('PEXPIRE', meta, ARGV[2])
  return {0, ARGV[1], 0}
end
local head = tonumber(state[1]) or 0
if head == 0 then redis.call('PEXPIRE', meta, ARGV[2]) end
local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
local oldest = 0
if first then oldest = tonumber(string.match(first[1], '^(%d+)')) end
return {head, state[2], oldest}
"""

#: KEYS: meta, snapshot.  ARGV: seq, state, timestamp.  → epoch, or an AHEAD error.
SNAPSHOT_LUA: Final = r"""
local state = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local head = tonumber(state[1]) or 0
if (not state[2]) or tonumber(ARGV[1]) > head then
  return redis.error_reply('AHEAD ' .. head)
end
redis.call('HSET', KEYS[2], 'seq', ARGV[1], 'epoch', state[2], 'state', ARGV[2], 'ts', ARGV[3])
return state[2]
"""


def decode_blob(channel: str, blob: bytes) -> StoredEvent:
    """A stream entry or pub/sub message (``seq\\nepoch\\nts\\nid\\ntype\\nframe``) → StoredEvent."""
    seq, epoch, ts, event_id, event_type, frame = blob.split(b"\n", 5)
    return StoredEvent(channel, int(seq), epoch.decode(), event_id.decode(), event_type.decode(), int(ts), frame)


def frame_parts(req: AppendRequest) -> tuple[bytes, bytes, bytes]:
    """The event frame around timestamp, seq and epoch, which the script fills in; the result
    is byte-identical to ``protocol.encode_event``."""
    head = orjson.dumps({"type": req.event_type, "id": req.event_id})[:-1] + b',"timestamp":'
    middle = b"," + orjson.dumps({"channel": req.channel})[1:-1] + b',"seq":'
    return head, middle, b',"payload":' + req.data_json + b"}"


def _unavailable(exc: BaseException, what: str) -> StoreUnavailable:
    return StoreUnavailable(f"Redis {what} failed: {exc}")


class RedisStore:
    """See the module docstring; the contract is in ``wsserver.store.base``.

    Args:
        link: the node's open Redis connection (``RedisLink.open`` runs around ``run``).
        retention: channel → Retention.
        wall_clock: seconds since the Unix epoch, for retention by age.
    """

    def __init__(
        self, link: RedisLink, *, retention: Callable[[str], Retention], wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.link = link
        self._retention = retention
        self._wall_clock = wall_clock
        self._queue = AppendQueue(WRITE_QUEUE)
        #: channel → appends waiting while that channel's previous script call is in flight
        self._lanes: dict[str, list[PendingAppend]] = {}
        self._shas: dict[str, str] = {}
        self._appended = self._duplicates = self._batches = 0
        self._running = False
        self._failing = False
        self.last_error = ""

    @property
    def healthy(self) -> bool:
        """Open, and the last command to Redis succeeded."""
        return self._running and not self._failing

    @property
    def problem(self) -> str:
        """Why the log cannot take publishes right now ("" when it can)."""
        if not self._running:
            return "the Redis event log is not open"
        return f"Redis is unreachable or refusing commands: {self.last_error}" if self._failing else ""

    def _ok(self) -> None:
        if self._failing:
            log.info("Redis is answering again")
        self._failing = False

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            log.error("Redis is not answering: %s", exc)
        self._failing = True
        self.last_error = str(exc)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Loads the scripts and runs the writer until cancelled (the link must be open)."""
        try:
            for name, source in (("append", APPEND_LUA), ("position", POSITION_LUA), ("snapshot", SNAPSHOT_LUA)):
                self._shas[name] = (await self.link.client.script_load(source)).decode()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot use Redis at {self.link.where}: {exc}") from exc
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery)
                nursery.start_soon(self._prober)
                self._running = True
                task_status.started()
        finally:
            self._running = False

    async def _prober(self) -> None:
        """While Redis is failing, PINGs it so that health turns green again without traffic."""
        while True:
            await trio.sleep(PROBE_INTERVAL)
            if self._failing:
                with trio.move_on_after(PROBE_INTERVAL):
                    try:
                        await self.link.client.ping()
                    except (RedisError, OSError) as exc:
                        self.last_error = str(exc)
                    else:
                        self._ok()

    # ------------------------------------------------------------------ appends

    async def append(self, request: AppendRequest) -> AppendResult:
        """Appends atomically through the script (or finds the original of a retried id)."""
        if not self._running:
            raise StoreUnavailable("the Redis event log is not open")
        return await self._queue.submit(request)

    def append_nowait(self, request: AppendRequest) -> PendingAppend:
        if not self._running:
            raise StoreUnavailable("the Redis event log is not open")
        return self._queue.enqueue(request)

    async def _writer(self, nursery: trio.Nursery) -> None:
        """Groups waiting appends by channel into lanes and keeps up to MAX_IN_FLIGHT pipelines
        going, with **at most one script call in flight per channel**: pipelines may run on
        different connections and Redis may execute a later one first, so a channel's next batch
        is sent only once its previous one was answered. That keeps one sender's publishes to a
        channel in frame order (they were queued in frame order); appends for a busy channel
        gather in its lane and go out together, so the round trip is shared (group commit)."""
        slots = trio.Semaphore(MAX_IN_FLIGHT)
        async for batch in self._queue.batches(MAX_BATCH):
            idle = []
            for pending in batch:
                channel = pending.request.channel
                lane = self._lanes.get(channel)
                if lane is None:
                    lane = self._lanes[channel] = []
                    idle.append(channel)
                lane.append(pending)
            if idle:
                await slots.acquire()
                nursery.start_soon(self._commit_lanes, idle, slots)

    async def _commit_lanes(self, channels: list[str], slots: trio.Semaphore) -> None:
        """Commits what is waiting in ``channels``' lanes, round after round, until they are empty;
        a lane is released (removed) in the same step that finds it empty, with no checkpoint
        between, so the writer starts a new committer exactly when none owns the channel."""
        try:
            while channels:
                calls = []
                for channel in channels:
                    lane = self._lanes[channel]
                    for i in range(0, len(lane), MAX_SCRIPT_EVENTS):
                        calls.append(lane[i : i + MAX_SCRIPT_EVENTS])
                    lane.clear()
                await self._commit(calls)
                still = []
                for channel in channels:
                    if self._lanes[channel]:
                        still.append(channel)
                    else:
                        del self._lanes[channel]
                channels = still
        finally:
            for channel in channels:  # cancelled: fail what is left, free the lanes
                for pending in self._lanes.pop(channel, ()):
                    pending.fail(StoreUnavailable("the Redis event log is closing"))
            slots.release()

    def _script_call(self, items: list[PendingAppend]) -> tuple[list[Any], list[Any]]:
        channel = items[0].request.channel
        retention = self._retention(channel)
        keys: list[Any] = [channel_key(channel, "meta"), channel_key(channel, "log"), channel_key(channel, "snapshot")]
        args: list[Any] = [
            pubsub_channel(channel),
            "SPUBLISH" if self.link.cluster else "PUBLISH",
            secrets.token_hex(6),
            int(self._wall_clock() * 1000),
            max(1, int(retention.ttl * 1000)),
            retention.max_events,
        ]
        for pending in items:
            req = pending.request
            index = 0
            if req.idem_key is not None:
                keys.append(channel_key(channel, f"idem:{req.idem_scope}\x00{req.idem_key}"))
                index = len(keys)
            args += [index, req.event_id, req.event_type, req.timestamp, *frame_parts(req)]
        return keys, args

    async def _commit(self, calls: list[list[PendingAppend]]) -> None:
        try:
            replies: list[Any] = [None] * len(calls)
            todo = list(range(len(calls)))
            with trio.move_on_after(APPEND_TIMEOUT) as timer:
                for _attempt in range(2):
                    answers = await self._pipeline(calls, todo)
                    retry = []
                    for index, answer in zip(todo, answers, strict=True):
                        if isinstance(answer, NoScriptError):
                            retry.append(index)  # the script did not run: safe to send again
                        else:
                            replies[index] = answer
                    if not retry:
                        break
                    self._shas["append"] = (await self.link.client.script_load(APPEND_LUA)).decode()
                    todo = retry
            if timer.cancelled_caught:
                raise StoreUnavailable(f"Redis did not answer within {APPEND_TIMEOUT}s")
        except (RedisError, OSError, StoreUnavailable) as exc:
            self._failed(exc)
            error = exc if isinstance(exc, StoreUnavailable) else _unavailable(exc, "append")
            for items in calls:
                for pending in items:
                    pending.fail(error)
            return
        self._ok()
        self._batches += 1
        for items, reply in zip(calls, replies, strict=True):
            self._settle(items, reply)

    async def _pipeline(self, calls: list[list[PendingAppend]], todo: list[int]) -> list[Any]:
        sha = self._shas["append"]
        async with self.link.client.pipeline(transaction=False, raise_on_error=False) as pipe:
            requests = []
            for index in todo:
                keys, args = self._script_call(calls[index])
                requests.append(pipe.evalsha(sha, keys=keys, args=args))
        answers = []
        for request in requests:
            try:
                answers.append(await request)
            except ResponseError as exc:
                answers.append(exc)
        return answers

    def _settle(self, items: list[PendingAppend], reply: Any) -> None:
        if isinstance(reply, BaseException):
            error = _unavailable(reply, "append")
            for pending in items:
                pending.fail(error)
            return
        epoch = reply[0].decode()
        for pending, answer in zip(items, reply[1:], strict=True):
            req = pending.request
            if isinstance(answer, int):
                pending.succeed(AppendResult(req.channel, answer, epoch, req.event_id, duplicate=False))
                self._appended += 1
            else:
                seq, first_epoch, event_id = answer.decode().split(" ", 2)
                pending.succeed(AppendResult(req.channel, int(seq), first_epoch, event_id, duplicate=True))
                self._duplicates += 1

    # ------------------------------------------------------------------ reads

    async def _call(self, what: str, request: Any) -> Any:
        try:
            with trio.fail_after(APPEND_TIMEOUT):
                reply = await request
        except trio.TooSlowError as exc:
            self._failed(exc)
            raise StoreUnavailable(f"Redis {what} timed out after {APPEND_TIMEOUT}s") from exc
        except (RedisError, OSError) as exc:
            self._failed(exc)
            raise _unavailable(exc, what) from exc
        self._ok()
        return reply

    async def _script(self, name: str, source: str, keys: list[Any], args: list[Any]) -> Any:
        client = self.link.client
        try:
            return await self._call(name, client.evalsha(self._shas[name], keys=keys, args=args))
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
        self._shas[name] = (await self._call("script load", client.script_load(source))).decode()
        return await self._call(name, client.evalsha(self._shas[name], keys=keys, args=args))

    async def position(self, channel: str) -> ChannelPosition:
        keys = [channel_key(channel, "meta"), channel_key(channel, "log"), channel_key(channel, "snapshot")]
        head, epoch, oldest = await self._script(
            "position", POSITION_LUA, keys, [secrets.token_hex(6), int(UNWRITTEN_TTL * 1000)]
        )
        return ChannelPosition(channel, epoch.decode(), int(head), int(oldest))

    async def read_after(
        self, channel: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> list[StoredEvent]:
        """Reads in rounds of at most READ_ROUND entries when ``max_bytes`` bounds the page, so
        that no more than about one round beyond the bound is ever transferred."""
        key = channel_key(channel, "log")
        events: list[StoredEvent] = []
        size = 0
        start = after_seq + 1
        while len(events) < limit:
            count = limit - len(events) if max_bytes is None else min(limit - len(events), READ_ROUND)
            entries = await self._call("read", self.link.client.xrange(key, f"{start}-0", "+", count=count))
            for entry in entries:
                ev = decode_blob(channel, entry.field_values[b"d"])
                if max_bytes is not None and events and size + len(ev.frame) > max_bytes:
                    return events
                size += len(ev.frame)
                events.append(ev)
            if len(entries) < count:
                break
            start = events[-1].seq + 1
        return events

    async def read_one(self, channel: str, seq: int) -> StoredEvent | None:
        entries = await self._call(
            "read", self.link.client.xrange(channel_key(channel, "log"), f"{seq}-0", f"{seq}-0")
        )
        return decode_blob(channel, entries[0].field_values[b"d"]) if entries else None

    # ------------------------------------------------------------------ snapshots

    async def put_snapshot(self, channel: str, seq: int, state_json: bytes) -> Snapshot:
        ts = int(self._wall_clock() * 1000)
        keys = [channel_key(channel, "meta"), channel_key(channel, "snapshot")]
        try:
            epoch = await self._script("snapshot", SNAPSHOT_LUA, keys, [seq, state_json, ts])
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, ResponseError) and "AHEAD" in str(cause):
                raise SnapshotAhead(f"snapshot seq {seq} is beyond the channel's head seq") from None
            raise
        return Snapshot(channel, seq, epoch.decode(), state_json, ts)

    async def get_snapshot(self, channel: str) -> Snapshot | None:
        seq, epoch, state, ts = await self._call(
            "snapshot read", self.link.client.hmget(channel_key(channel, "snapshot"), ["seq", "epoch", "state", "ts"])
        )
        if seq is None or epoch is None or state is None:
            return None
        return Snapshot(channel, int(seq), epoch.decode(), state, int(ts or 0))

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(self._appended, self._duplicates, self._batches, 0)
