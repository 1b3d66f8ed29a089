"""The bounded per-connection send queue between the fan-out path and the connection's writer,
bounded in frames **and in bytes** (a frame may be up to 16 MiB; a count alone bounds nothing).

Live events are offered without waiting (``offer``; a full queue is a slow consumer → close
4009); replies and replay frames wait for ``room()`` first, while the queue is more than half full
(in frames or bytes), so that a long replay never crowds out the room live events need. Queued
event frames are the event's shared wire bytes (encoded once), never copies. An idle connection's
frames usually never reach the queue: the fan-out writes them straight to the socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from attrs import frozen

if TYPE_CHECKING:
    from wsserver.subscription import Subscription

#: (frame header, frame payload, the subscription it advances or None, the seq it carries or 0);
#: the payload of an event is its shared JSON, never a copy.
Item = tuple[bytes, bytes, "Subscription | None", int]


@frozen
class OutboxStatistics:
    queued: int
    capacity: int
    peak: int
    queued_bytes: int = 0
    capacity_bytes: int = 0


class Outbox:
    """A list with two wake-up points: ``room()`` waits for space, ``flushed()`` for the queue to
    be written. Whoever writes (the connection's writer task, started when there is something to
    write) takes a prefix of the queue at once: the items stay the shared frame bytes, and the
    socket gets them in one vectored write."""

    __slots__ = (
        "_items", "capacity", "capacity_bytes", "_soft_limit", "_soft_bytes", "_space_lot", "closed", "peak", "bytes",
        "writing", "_flush_lot", "idle",
    )

    def __init__(self, capacity: int, capacity_bytes: int = 1 << 62) -> None:
        self._items: list[Item] = []
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self._soft_limit = max(1, capacity // 2)
        self._soft_bytes = max(1, capacity_bytes // 2)
        self._space_lot: trio.lowlevel.ParkingLot | None = None  # created by the first waiting put()
        self.closed = False
        self.peak = 0
        self.bytes = 0
        self.writing = False  # the writer holds a batch it has not finished writing
        self._flush_lot: trio.lowlevel.ParkingLot | None = None
        #: nothing queued, no write in progress, not closed: a frame may go straight to the socket
        self.idle = True

    def __len__(self) -> int:
        return len(self._items)

    def _push(self, item: Item) -> None:
        items = self._items
        items.append(item)
        self.idle = False
        self.bytes += len(item[0]) + len(item[1])
        if len(items) > self.peak:
            self.peak = len(items)

    def offer(self, item: Item) -> bool:
        """Queues a live frame without waiting; False when the queue is full (slow consumer)."""
        if len(self._items) >= self.capacity or self.bytes + len(item[1]) > self.capacity_bytes or self.closed:
            return False
        self._push(item)
        return True

    def has_room(self) -> bool:
        """Below the soft limits (half the capacity, in frames and in bytes), or closed."""
        return self.closed or (len(self._items) < self._soft_limit and self.bytes < self._soft_bytes)

    async def room(self) -> None:
        """Waits until ``has_room()``; always a checkpoint."""
        while not self.has_room():
            if self._space_lot is None:
                self._space_lot = trio.lowlevel.ParkingLot()
            await self._space_lot.park()
        await trio.lowlevel.checkpoint()

    def push(self, item: Item) -> None:
        """Queues a frame at once (after ``room()``: the caller checks what may have changed while
        it waited, e.g. that its subscription still exists). Ignored once closed."""
        if not self.closed:
            self._push(item)

    async def put(self, item: Item) -> None:
        """Queues a reply frame, waiting while the queue is over its soft limits."""
        await self.room()
        self.push(item)

    def take(self, max_bytes: int = 1 << 62) -> list[Item]:
        """The oldest queued items, at least one and at most ``max_bytes`` in all when there is
        more than one ([] when none); the taker writes them and then calls ``written()``."""
        items = self._items
        if not items:
            return []
        if self.bytes <= max_bytes:
            batch, self._items, self.bytes = items, [], 0
        else:
            size, n = len(items[0][0]) + len(items[0][1]), 1
            while n < len(items) and size + len(items[n][0]) + len(items[n][1]) <= max_bytes:
                size += len(items[n][0]) + len(items[n][1])
                n += 1
            batch, self._items = items[:n], items[n:]
            self.bytes -= size
        if self._space_lot:
            self._space_lot.unpark_all()
        self.writing = True
        self.idle = False
        return batch

    def written(self) -> None:
        """The taker finished writing its last batch to the socket (or gave up on it)."""
        self.writing = False
        self.idle = not self._items and not self.closed
        if self._flush_lot and not self._items:
            self._flush_lot.unpark_all()

    async def drained(self) -> None:
        """Waits until nothing is queued and no write is in progress (also once closed: the close
        frame must follow what was queued before it)."""
        while self._items or self.writing:
            if self._flush_lot is None:
                self._flush_lot = trio.lowlevel.ParkingLot()
            await self._flush_lot.park()
        await trio.lowlevel.checkpoint()

    async def flushed(self) -> None:
        """Waits until everything queued so far has been written to the socket (or closed)."""
        while (self._items or self.writing) and not self.closed:
            if self._flush_lot is None:
                self._flush_lot = trio.lowlevel.ParkingLot()
            await self._flush_lot.park()
        await trio.lowlevel.checkpoint()

    def close(self, *, discard: bool = False) -> None:
        """No more frames; the writer drains what is queued (or nothing, with ``discard``)."""
        self.closed = True
        self.idle = False
        if discard:
            self._items = []
            self.bytes = 0
            if self._flush_lot is not None and not self.writing:
                self._flush_lot.unpark_all()
        if self._space_lot is not None:
            self._space_lot.unpark_all()
        if self._flush_lot is not None:
            self._flush_lot.unpark_all()

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(
            queued=len(self._items), capacity=self.capacity, peak=self.peak, queued_bytes=self.bytes,
            capacity_bytes=self.capacity_bytes,
        )
