"""One node-wide task that serves every connection's deadlines (heartbeat pings, pong timeouts,
the auth timeout, `token_expiring`, token expiry): a heap of (when, client) entries and one sleep
until the earliest. An idle connection then owns no timer task of its own (a Trio task costs a
few KiB, and idle connections are what a mobile backend holds most of).

Clients reschedule by calling ``schedule`` again; older entries of the same client are skipped
when they come up (lazy deletion). ``on_timer`` runs synchronously in the wheel's task, so it
must not await: it queues frames, closes connections, and returns its next deadline.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Protocol

import trio


class TimerClient(Protocol):
    #: the deadline of the client's current entry (None: none); set by the wheel only
    timer_due: float | None
    #: which heap entry is the current one; set by the wheel only
    timer_key: int

    def on_timer(self, now: float) -> float | None:
        """Called at or after ``timer_due``; returns the next deadline (None: no more)."""


class TimerWheel:
    """Supports ``nursery.start``; runs until cancelled."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerClient]] = []
        self._order = itertools.count()
        self._wake = trio.Event()
        self._stale = 0
        self.fired = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, client: TimerClient, when: float | None) -> None:
        """Makes ``client.on_timer`` run at ``when`` (replacing its earlier deadline; None: never)."""
        if client.timer_due is not None:
            self._stale += 1  # its earlier entry stays in the heap until it comes up or a compaction
        client.timer_due = when
        client.timer_key = key = next(self._order)
        if when is None:
            return
        heapq.heappush(self._heap, (when, key, client))
        if when <= self._heap[0][0]:
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        heap = self._heap
        while True:
            self._wake = trio.Event()
            with trio.move_on_at(heap[0][0] if heap else float("inf")):
                await self._wake.wait()
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                when, key, client = heapq.heappop(heap)
                if client.timer_key != key:
                    self._stale -= 1
                    continue  # rescheduled or cancelled since: a stale entry
                client.timer_due = None
                self.fired += 1
                self.schedule(client, client.on_timer(now))
            if self._stale > 64 and self._stale > len(heap) // 2:
                self._compact()

    def _compact(self) -> None:
        """Drops stale entries (many reschedules, e.g. token refreshes) so the heap stays small."""
        self._heap[:] = [entry for entry in self._heap if entry[2].timer_key == entry[1]]
        heapq.heapify(self._heap)
        self._stale = 0
