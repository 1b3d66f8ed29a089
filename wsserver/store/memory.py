"""An in-memory event store with the contract of ``wsserver.store.base`` except durability
(nothing survives the process; a new instance is a new epoch, as a lost log must be). For the
layer tests (a connection over the in-memory transport, under Trio's MockClock, where a store
that waits on threads would let virtual time jump) and the store contract suite."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import trio

from wsserver.config import Retention
from wsserver.protocol import encode_event
from wsserver.store.base import (
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


class _Channel:
    __slots__ = ("head", "events", "last_ts", "snapshot")

    def __init__(self) -> None:
        self.head = 0
        self.events: list[StoredEvent] = []  # consecutive seqs, oldest first
        self.last_ts = 0
        self.snapshot: Snapshot | None = None


class MemoryStore:
    """See the module docstring. ``on_commit`` is called with each new event (a list of one), in
    seq order, before the append returns (as the durable stores announce)."""

    def __init__(
        self,
        *,
        retention: Callable[[str], Retention],
        on_commit: Callable[[list[StoredEvent]], None] = lambda events: None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._retention = retention
        self.on_commit = on_commit
        self._wall_clock = wall_clock
        self.epoch = secrets.token_hex(4)
        self._channels: dict[str, _Channel] = {}
        self._ids: dict[tuple[str, str], AppendResult] = {}
        self._appended = self._duplicates = self._trimmed = 0
        self._open = False
        #: set by a test to make appends fail (a full disk)
        self.problem = ""

    @property
    def healthy(self) -> bool:
        return self._open and not self.problem

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._open = True
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._open = False

    def _append(self, req: AppendRequest) -> AppendResult:
        if not self._open or self.problem:
            raise StoreUnavailable(self.problem or "the event store is not open")
        idem = None if req.idem_key is None else (req.idem_scope, req.idem_key)
        if idem is not None and idem in self._ids:
            self._duplicates += 1
            return self._ids[idem]
        ch = self._channels.setdefault(req.channel, _Channel())
        ch.head += 1
        ch.last_ts = ts = max(req.timestamp, ch.last_ts)
        frame = encode_event(event_type=req.event_type, event_id=req.event_id, timestamp=ts, channel=req.channel,
                             seq=ch.head, epoch=self.epoch, data_json=req.data_json)
        ev = StoredEvent(req.channel, ch.head, self.epoch, req.event_id, req.event_type, ts, frame)
        ch.events.append(ev)
        retention = self._retention(req.channel)
        overflow = len(ch.events) - retention.max_events
        if overflow > 0:
            del ch.events[:overflow]
            self._trimmed += overflow
        if idem is not None:
            self._ids[idem] = AppendResult(req.channel, ch.head, self.epoch, req.event_id, duplicate=True)
        self._appended += 1
        self.on_commit([ev])
        return AppendResult(req.channel, ch.head, self.epoch, req.event_id, duplicate=False)

    async def append(self, request: AppendRequest) -> AppendResult:
        result = self._append(request)
        await trio.lowlevel.checkpoint()
        return result

    def append_nowait(self, request: AppendRequest) -> PendingAppend:
        pending = PendingAppend(request)
        try:
            pending.succeed(self._append(request))
        except StoreUnavailable as exc:
            pending.fail(exc)
        return pending

    async def read_after(
        self, channel: str, after_seq: int, limit: int, max_bytes: int | None = None
    ) -> list[StoredEvent]:
        await trio.lowlevel.checkpoint()
        ch = self._channels.get(channel)
        if ch is None or not ch.events:
            return []
        start = max(0, after_seq + 1 - ch.events[0].seq)
        out: list[StoredEvent] = []
        size = 0
        for ev in ch.events[start : start + limit]:
            if max_bytes is not None and out and size + len(ev.frame) > max_bytes:
                break
            size += len(ev.frame)
            out.append(ev)
        return out

    async def read_one(self, channel: str, seq: int) -> StoredEvent | None:
        events = await self.read_after(channel, seq - 1, 1)
        return events[0] if events and events[0].seq == seq else None

    async def position(self, channel: str) -> ChannelPosition:
        await trio.lowlevel.checkpoint()
        ch = self._channels.get(channel)
        if ch is None:
            return ChannelPosition(channel, self.epoch, 0, 0)
        return ChannelPosition(channel, self.epoch, ch.head, ch.events[0].seq if ch.events else 0)

    async def put_snapshot(self, channel: str, seq: int, state_json: bytes) -> Snapshot:
        await trio.lowlevel.checkpoint()
        ch = self._channels.setdefault(channel, _Channel())
        if seq > ch.head:
            raise SnapshotAhead(f"snapshot seq {seq} is beyond the channel's head seq {ch.head}")
        ch.snapshot = Snapshot(channel, seq, self.epoch, state_json, int(self._wall_clock() * 1000))
        return ch.snapshot

    async def get_snapshot(self, channel: str) -> Snapshot | None:
        await trio.lowlevel.checkpoint()
        ch = self._channels.get(channel)
        return None if ch is None else ch.snapshot

    async def trim(self) -> int:
        """Retention by age, from the front of each log (by count is applied on append)."""
        await trio.lowlevel.checkpoint()
        now_ms = int(self._wall_clock() * 1000)
        trimmed = 0
        for name, ch in self._channels.items():
            cutoff = now_ms - int(self._retention(name).ttl * 1000)
            keep = next((i for i, ev in enumerate(ch.events) if ev.timestamp >= cutoff), len(ch.events))
            del ch.events[:keep]
            trimmed += keep
        self._trimmed += trimmed
        return trimmed

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(self._appended, self._duplicates, self._appended, self._trimmed, len(self._channels))
