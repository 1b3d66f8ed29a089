"""The bounded per-connection send queue between the fan-out path and the connection's writer.

Live events are offered without waiting (``offer``; a full queue is a slow consumer → close
4009); replies and replay frames ``put`` with backpressure, waiting while the queue is more than
half full so that a long replay never crowds out the room live events need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from attrs import frozen

if TYPE_CHECKING:
    from wsserver.subscription import Subscription

#: (wire bytes, the subscription it advances or None, the seq it carries or 0)
Item = tuple[bytes, "Subscription | None", int]


@frozen
class OutboxStatistics:
    queued: int
    capacity: int
    peak: int


class Outbox:
    """A list with two wake-up points: the writer waits for data, ``put`` waits for room.

    The writer takes everything queued at once by swapping the list (O(1), and an empty list
    costs a fraction of an empty deque on each of many idle connections)."""

    __slots__ = ("_items", "capacity", "_soft_limit", "_writer_lot", "_space_lot", "closed", "peak")

    def __init__(self, capacity: int) -> None:
        self._items: list[Item] = []
        self.capacity = capacity
        self._soft_limit = max(1, capacity // 2)
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._space_lot: trio.lowlevel.ParkingLot | None = None  # created by the first waiting put()
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
        if self._writer_lot:  # unpark() costs even with nobody parked (hot path)
            self._writer_lot.unpark()
        return True

    async def put(self, item: Item) -> None:
        """Queues a reply or replay frame, waiting while the queue is over half full."""
        while len(self._items) >= self._soft_limit and not self.closed:
            if self._space_lot is None:
                self._space_lot = trio.lowlevel.ParkingLot()
            await self._space_lot.park()
        if self.closed:
            await trio.lowlevel.checkpoint()
            return
        self._items.append(item)
        if len(self._items) > self.peak:
            self.peak = len(self._items)
        if self._writer_lot:
            self._writer_lot.unpark()
        await trio.lowlevel.checkpoint()

    async def take(self) -> list[Item]:
        """Everything queued; [] once closed and drained."""
        while not self._items:
            if self.closed:
                return []
            await self._writer_lot.park()
        batch, self._items = self._items, []
        if self._space_lot:
            self._space_lot.unpark_all()
        return batch

    def close(self, *, discard: bool = False) -> None:
        """No more frames; the writer drains what is queued (or nothing, with ``discard``)."""
        self.closed = True
        if discard:
            self._items = []
        self._writer_lot.unpark_all()
        if self._space_lot is not None:
            self._space_lot.unpark_all()

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(queued=len(self._items), capacity=self.capacity, peak=self.peak)
