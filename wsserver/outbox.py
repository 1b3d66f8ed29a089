"""The bounded per-connection send queue between the fan-out path and the connection's writer.

Live events are offered without waiting (``offer``; a full queue is a slow consumer → close
4009); replies and replay frames ``put`` with backpressure, waiting while the queue is more than
half full so that a long replay never crowds out the room live events need.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

import trio
from attrs import frozen

if TYPE_CHECKING:
    from wsserver.subscription import Subscription

#: Most bytes one writer wake-up joins into a single socket write.
MAX_WRITE_BYTES: Final = 256 * 1024

#: (wire bytes, the subscription it advances or None, the seq it carries or 0)
Item = tuple[bytes, "Subscription | None", int]


@frozen
class OutboxStatistics:
    queued: int
    capacity: int
    peak: int


class Outbox:
    """A deque with two wake-up points: the writer waits for data, ``put`` waits for room."""

    __slots__ = ("_items", "capacity", "_soft_limit", "_writer_lot", "_space_lot", "closed", "peak")

    def __init__(self, capacity: int) -> None:
        self._items: deque[Item] = deque()
        self.capacity = capacity
        self._soft_limit = max(1, capacity // 2)
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._space_lot = trio.lowlevel.ParkingLot()
        self.closed = False
        self.peak = 0

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: Item) -> bool:
        """Queues a live frame without waiting; False when the queue is full (slow consumer)."""
        items = self._items
        if len(items) >= self.capacity or self.closed:
            return False
        items.append(item)
        if len(items) > self.peak:
            self.peak = len(items)
        self._writer_lot.unpark()
        return True

    async def put(self, item: Item) -> None:
        """Queues a reply or replay frame, waiting while the queue is over half full."""
        while len(self._items) >= self._soft_limit and not self.closed:
            await self._space_lot.park()
        if self.closed:
            await trio.lowlevel.checkpoint()
            return
        self._items.append(item)
        if len(self._items) > self.peak:
            self.peak = len(self._items)
        self._writer_lot.unpark()
        await trio.lowlevel.checkpoint()

    async def take(self) -> list[Item]:
        """Everything queued (up to MAX_WRITE_BYTES); [] once closed and drained."""
        items = self._items
        while not items:
            if self.closed:
                return []
            await self._writer_lot.park()
        batch: list[Item] = []
        size = 0
        while items and size < MAX_WRITE_BYTES:
            item = items.popleft()
            batch.append(item)
            size += len(item[0])
        if len(items) < self._soft_limit:
            self._space_lot.unpark_all()
        return batch

    def close(self, *, discard: bool = False) -> None:
        """No more frames; the writer drains what is queued (or nothing, with ``discard``)."""
        self.closed = True
        if discard:
            self._items.clear()
        self._writer_lot.unpark_all()
        self._space_lot.unpark_all()

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(queued=len(self._items), capacity=self.capacity, peak=self.peak)
