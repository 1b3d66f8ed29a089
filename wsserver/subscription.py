"""THE subscription state machine: one connection's subscription to one channel, its position
(epoch, last seq handed on, last seq written) and every transition it makes — nothing else
writes its state.

    CATCHING_UP ──finish_catch_up()──▶ LIVE ──deliver(): gap or new epoch──▶ CATCHING_UP
                                        └──begin_catch_up() (the backplane saw a loss)─┘

* ``deliver`` (the live path, synchronous, never awaits): while LIVE, the next seq goes to the
  owner's socket or queue at once, a duplicate or late one is dropped, and a gap or a new epoch
  turns the subscription CATCHING_UP and asks the owner to catch up from the durable store;
  while CATCHING_UP, live events are buffered (bounded; overflow just means "read the store").
* ``accept_stored`` takes the next event read from the store during a catch-up and refuses
  anything that does not continue the position (``LostPosition``: the caller re-plans).
* ``finish_catch_up`` (synchronous) merges the buffered live events after the position and turns
  LIVE in one step, so "no checkpoint between merge and switch" holds by construction: Trio
  cannot run another task inside a function that does not await (centrifuge's buffer lock).

The subscription reaches its connection only through the small ``Owner`` protocol declared here.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final, Protocol

from wsserver.recovery import merge_buffer

if TYPE_CHECKING:
    from wsserver.store.base import StoredEvent

#: Live events buffered per subscription while it catches up, in events and in bytes. Overflow
#: is not an error: the events are durable, so the catch-up reads the store once more; the byte
#: bound keeps a reconnect storm on a channel of large events small.
CATCH_UP_BUFFER: Final = 1024
CATCH_UP_BUFFER_BYTES: Final = 256 * 1024


class SubState(enum.Enum):
    CATCHING_UP = "catching_up"
    LIVE = "live"
    ENDED = "ended"  # unsubscribed, revoked or closed: nothing more is handed on


_LIVE: Final = SubState.LIVE  # a module global: the hot path's one state check


class LostPosition(Exception):
    """The store no longer continues the subscription's position (events trimmed or missing, or
    a new epoch): the subscription must be re-planned (replay, snapshot or reset)."""


class Owner(Protocol):
    """The connection a subscription belongs to, as the subscription sees it."""

    def send_event(self, sub: Subscription, ev: StoredEvent) -> bool:
        """Hands ``ev``'s frame to the socket or the connection's queue now, without waiting;
        False when the queue is full (the owner then closes itself as a slow consumer)."""

    def send_events(self, sub: Subscription, events: list[StoredEvent]) -> bool:
        """The same for consecutive events, all or none (one write when the socket takes them)."""

    def start_catch_up(self, sub: Subscription, cause: str) -> None:
        """Runs ``sub``'s catch-up from the store in a task of the owner's (returns at once);
        ``cause`` names why, for the metrics (gap, reconnect, audit)."""


class Subscription:
    """Created CATCHING_UP and registered in the hub before the store is read, so no event
    published meanwhile is missed; its first catch-up turns it LIVE."""

    __slots__ = (
        "channel", "owner", "state", "epoch", "last_seq", "last_sent_seq", "buffer", "buffer_bytes", "overflowed",
    )

    def __init__(self, channel: str, owner: Owner) -> None:
        self.channel = channel
        self.owner = owner
        self.state = SubState.CATCHING_UP
        self.epoch = ""
        self.last_seq = 0  # highest seq handed to the socket or queue
        self.last_sent_seq = 0  # highest seq written to the socket
        self.buffer: list[StoredEvent] = []
        self.buffer_bytes = 0
        self.overflowed = False

    @property
    def active(self) -> bool:
        """Not ended: still the connection's subscription to its channel."""
        return self.state is not SubState.ENDED

    # ------------------------------------------------------------------ transitions

    def start_at(self, epoch: str, seq: int) -> None:
        """A (re-)plan decided where delivery starts: events after ``seq`` of ``epoch`` follow."""
        if self.state is SubState.ENDED:
            return
        self.epoch = epoch
        self.last_seq = seq
        self.last_sent_seq = seq
        self.state = SubState.CATCHING_UP
        if any(ev.epoch != epoch for ev in self.buffer):  # a re-plan after a new epoch: keep its events only
            self.buffer = [ev for ev in self.buffer if ev.epoch == epoch]
            self.buffer_bytes = sum(len(ev.frame) for ev in self.buffer)

    def deliver(self, ev: StoredEvent) -> None:
        """Live path (synchronous, never awaits): called by the hub once per event."""
        if self.state is _LIVE and ev.seq == self.last_seq + 1 and ev.epoch == self.epoch:
            if self.owner.send_event(self, ev):  # the common case: the next seq, straight on
                self.last_seq = ev.seq
            return
        if self.state is SubState.CATCHING_UP:
            self._buffer(ev)
            return
        if self.state is _LIVE:
            if ev.epoch == self.epoch and ev.seq <= self.last_seq:
                return  # duplicate or late: already handed on
            # A gap (a lost backplane message) or a new epoch: catch up from the store.
            self.begin_catch_up(ev, "gap")

    def deliver_run(self, events: list[StoredEvent]) -> None:
        """Consecutive events of one commit (seq order): handed on together when they continue
        the position, else one by one through ``deliver``."""
        first = events[0]
        if self.state is _LIVE and first.seq == self.last_seq + 1 and first.epoch == self.epoch:
            if self.owner.send_events(self, events):
                self.last_seq = events[-1].seq
            return
        for ev in events:
            self.deliver(ev)

    def begin_catch_up(self, seen: StoredEvent | None = None, cause: str = "gap") -> bool:
        """LIVE → CATCHING_UP, and the owner catches up from the store (a gap on the live path,
        or the backplane may have lost events: a pub/sub reconnect, an audit). ``seen`` is an
        event that arrived out of turn, kept for the merge. False when already catching up."""
        if self.state is not _LIVE:
            return False
        self.state = SubState.CATCHING_UP
        self.buffer, self.buffer_bytes, self.overflowed = [], 0, False
        if seen is not None:
            self._buffer(seen)
        self.owner.start_catch_up(self, cause)
        return True

    def accept_stored(self, ev: StoredEvent) -> None:
        """The next event read from the store during a catch-up; the caller then queues it.

        Raises:
            LostPosition: ``ev`` does not continue the position (a hole, or a new epoch).
        """
        if ev.seq != self.last_seq + 1 or ev.epoch != self.epoch:
            raise LostPosition(f"{self.channel}: store has seq {ev.seq} of {ev.epoch} after {self.last_seq} of {self.epoch}")
        self.last_seq = ev.seq

    def finish_catch_up(self) -> bool:
        """Synchronous: merges the live events buffered meanwhile after the position, hands them
        to the owner and turns LIVE, in one step with no checkpoint. False: the store must be read
        again first (the buffer overflowed, or a gap lies between the store read and the buffer).

        Raises:
            LostPosition: a buffered event carries another epoch.
        """
        if self.overflowed:
            self.buffer, self.buffer_bytes, self.overflowed = [], 0, False
            return False
        if any(ev.epoch != self.epoch for ev in self.buffer):
            raise LostPosition(f"{self.channel}: a new epoch arrived while catching up")
        pending = merge_buffer(self.buffer, self.last_seq)
        if pending is None:
            return False
        self.buffer, self.buffer_bytes = [], 0
        self.state = SubState.LIVE
        for ev in pending:
            if not self.owner.send_event(self, ev):
                return True  # the owner is closing as a slow consumer; nothing more to do here
            self.last_seq = ev.seq
        return True

    def end(self) -> None:
        """Unsubscribed, revoked or closed: from now on nothing of this channel is handed on."""
        self.state = SubState.ENDED
        self.buffer, self.buffer_bytes = [], 0

    def written(self, seq: int) -> None:
        """The owner wrote the frame of ``seq`` to the socket."""
        if seq > self.last_sent_seq:
            self.last_sent_seq = seq

    # ------------------------------------------------------------------ internals

    def _buffer(self, ev: StoredEvent) -> None:
        if self.overflowed:
            return
        if len(self.buffer) < CATCH_UP_BUFFER and self.buffer_bytes + len(ev.frame) <= CATCH_UP_BUFFER_BYTES:
            self.buffer.append(ev)
            self.buffer_bytes += len(ev.frame)
        else:
            self.overflowed = True
            self.buffer, self.buffer_bytes = [], 0  # read from the store instead: free the memory now
