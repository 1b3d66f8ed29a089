"""The event-store contract every channel log implements (embedded SQLite, Redis Streams),
and the value types that cross it.

Contract (each implementation's tests run the same suite, ``tests/wsserver/store_contract.py``):

* **Sequencing.** ``append`` assigns the channel's next seq: 1, 2, 3, … with no gap and no reuse
  under one epoch. The epoch names a generation of the channel's log; it changes whenever the
  log may have lost acknowledged events (data directory wiped, Redis lost its data) or was reset.
* **Durability.** ``append`` returns only once the event is durable; an acknowledged event
  survives a restart and a crash of the server process.
* **Idempotency.** ``(idem_scope, idem_key)`` is remembered for at least the channel's history
  ttl: appending it again returns the first append's result with ``duplicate=True`` and stores
  nothing. Scopes keep senders apart (the HTTP API shares one, each user has its own).
* **Ordering of announcements.** New events are announced (embedded: the ``on_commit``
  callback, once per commit with its events; Redis: the pub/sub message the same atomic script
  sends) in seq order per channel, before ``append`` returns to its caller.
* **Reads.** ``read_after(channel, n, limit, max_bytes)`` returns stored events n+1, n+2, … in
  order, at most ``limit`` of them and, past the first, at most ``max_bytes`` of frames; it may
  start later than n+1 when older events were trimmed (callers check every seq).
* **Retention.** Events older than the channel's ttl or beyond its max count may be trimmed at
  any time; the store may keep more. Replay decisions use ``recovery.window_allows``, never
  the physical contents alone, so clients meet one predictable rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import attrs
import trio
from attrs import frozen

from wsserver.framing import text_header


class StoreUnavailable(Exception):
    """The store cannot take or serve events right now (disk error, Redis down). Retryable."""


class SnapshotAhead(Exception):
    """A snapshot's seq is beyond the channel's head."""


@frozen
class AppendRequest:
    """One event to append.

    ``data_json`` is the serialised `data` object; ``event_id`` the event's own id (kept forever,
    identical on every replay); ``idem_scope``/``idem_key`` the sender's publish id, if any.
    """

    channel: str
    event_type: str
    data_json: bytes
    event_id: str
    timestamp: int  # ms since the Unix epoch: publish time
    idem_scope: str
    idem_key: str | None


class StoredEvent:
    """One sequenced event. ``frame`` is its JSON wire form, encoded once when it was appended and
    shared by every subscriber; ``head`` its WebSocket frame header (``wsserver.framing``); ``wire``
    the two as one buffer, built once on first use by the live path (one ``write`` per delivery;
    replayed events are written as head + frame and never pay for the copy)."""

    __slots__ = ("channel", "seq", "epoch", "id", "type", "timestamp", "frame", "head", "_wire")

    def __init__(
        self, channel: str, seq: int, epoch: str, id: str, type: str, timestamp: int, frame: bytes
    ) -> None:
        self.channel = channel
        self.seq = seq
        self.epoch = epoch
        self.id = id
        self.type = type
        self.timestamp = timestamp
        self.frame = frame
        self.head = text_header(len(frame))
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._wire = self.head + self.frame
        return wire

    def __repr__(self) -> str:
        return f"StoredEvent({self.channel!r}, seq={self.seq}, epoch={self.epoch!r}, type={self.type!r})"


@frozen
class AppendResult:
    """Where an appended (or, for a retried id, the original) event sits."""

    channel: str
    seq: int
    epoch: str
    event_id: str
    duplicate: bool


@frozen
class ChannelPosition:
    """A channel log's current state. ``oldest_seq`` is the oldest event still stored (0: none)."""

    channel: str
    epoch: str
    head_seq: int
    oldest_seq: int


@frozen
class Snapshot:
    """Application state of a channel as of ``seq`` under ``epoch``."""

    channel: str
    seq: int
    epoch: str
    state_json: bytes
    timestamp: int


@frozen
class StoreStatistics:
    appended: int
    duplicates: int
    batches: int
    trimmed: int
    channels: int = attrs.field(default=-1)


class EventStore(Protocol):
    """See the module docstring for the contract."""

    async def run(self, *, task_status=...) -> None:
        """Opens the store and runs its background work until cancelled; supports ``nursery.start``."""

    async def append(self, request: AppendRequest) -> AppendResult: ...

    def append_nowait(self, request: AppendRequest) -> PendingAppend:
        """Queues an append in call order and returns at once; ``await pending.wait()`` for the
        result. Raises trio.WouldBlock when the store's queue is full, StoreUnavailable when closed."""

    async def read_after(
        self, channel: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> list[StoredEvent]: ...

    async def read_one(self, channel: str, seq: int) -> StoredEvent | None: ...

    async def position(self, channel: str) -> ChannelPosition: ...

    async def put_snapshot(self, channel: str, seq: int, state_json: bytes) -> Snapshot: ...

    async def get_snapshot(self, channel: str) -> Snapshot | None: ...

    def statistics(self) -> StoreStatistics: ...

    @property
    def healthy(self) -> bool:
        """False while appends fail (disk full, Redis unreachable); turns True again by itself."""

    @property
    def problem(self) -> str:
        """Why ``healthy`` is False, in plain words for operators ("" while healthy)."""


class PendingAppend:
    """One append waiting for its store's writer task to commit it (alone or in a group)."""

    __slots__ = ("request", "done", "result", "error")

    def __init__(self, request: AppendRequest) -> None:
        self.request = request
        self.done = trio.Event()
        self.result: AppendResult | None = None
        self.error: BaseException | None = None

    def succeed(self, result: AppendResult) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()

    async def wait(self) -> AppendResult:
        """The append's result, once committed; raises what the commit raised."""
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class AppendQueue:
    """The bounded queue between publishers and a store's single writer task: ``submit`` waits
    for the append's outcome; the writer takes every append waiting at once, so one commit
    (fsync, or Redis round trip) serves many publishers (group commit)."""

    def __init__(self, size: int) -> None:
        self._tx, self._rx = trio.open_memory_channel[PendingAppend](size)

    async def submit(self, request: AppendRequest) -> AppendResult:
        pending = PendingAppend(request)
        await self._tx.send(pending)
        return await pending.wait()

    def enqueue(self, request: AppendRequest) -> PendingAppend:
        """Queues an append without waiting (in call order); raises trio.WouldBlock when full."""
        pending = PendingAppend(request)
        self._tx.send_nowait(pending)
        return pending

    async def batches(self, max_batch: int) -> AsyncIterator[list[PendingAppend]]:
        """Yields the appends waiting, at least one and at most ``max_batch`` at a time."""
        async for first in self._rx:
            batch = [first]
            while len(batch) < max_batch:
                try:
                    batch.append(self._rx.receive_nowait())
                except trio.WouldBlock:
                    break
            yield batch
