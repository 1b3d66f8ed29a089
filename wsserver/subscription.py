"""One connection's subscription to one channel: its position (epoch, last seq queued, last
seq written) and the live-path rule that keeps delivery gapless, ordered and duplicate-free.

While RECOVERING (replaying from the store) live events are buffered, not sent; the session's
catch-up merges the buffer and switches to LIVE with no checkpoint in between.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from wsserver.session import Session
    from wsserver.store.base import StoredEvent

#: Live events buffered per subscription while it replays from the store, in events and in
#: bytes. Overflow is not an error: the events are durable, so the catch-up reads the store
#: once more; the byte bound keeps a reconnect storm on a channel of large events small.
RECOVERY_BUFFER: Final = 1024
RECOVERY_BUFFER_BYTES: Final = 256 * 1024


class SubState(enum.Enum):
    RECOVERING = "recovering"
    LIVE = "live"


class Subscription:
    """Created RECOVERING and registered in the hub before the store is read (so no event
    published meanwhile is missed); the session's catch-up turns it LIVE."""

    __slots__ = (
        "channel", "session", "state", "epoch", "last_seq", "last_sent_seq", "buffer", "buffer_bytes", "overflowed",
        "repairing",
    )

    def __init__(self, channel: str, session: Session) -> None:
        self.channel = channel
        self.session = session
        self.state = SubState.RECOVERING
        self.epoch = ""
        self.last_seq = 0  # highest seq handed to the outbox
        self.last_sent_seq = 0  # highest seq written to the socket
        self.buffer: list[StoredEvent] = []
        self.buffer_bytes = 0
        self.overflowed = False
        self.repairing = False

    def deliver(self, ev: StoredEvent) -> None:
        """Live path (synchronous, never awaits): called by the hub once per event."""
        if self.state is SubState.RECOVERING:
            if self.overflowed:
                return
            if len(self.buffer) < RECOVERY_BUFFER and self.buffer_bytes + len(ev.frame) <= RECOVERY_BUFFER_BYTES:
                self.buffer.append(ev)
                self.buffer_bytes += len(ev.frame)
            else:
                self.overflowed = True
                self.buffer = []  # re-read from the store instead: free the memory now
                self.buffer_bytes = 0
            return
        if ev.epoch == self.epoch:
            if ev.seq <= self.last_seq:
                return  # duplicate or late: already delivered
            if ev.seq == self.last_seq + 1:
                if self.session.outbox.offer((ev.head, ev.frame, self, ev.seq)):
                    self.last_seq = ev.seq
                else:
                    self.session.slow_consumer()
                return
        # A gap (a lost backplane message) or a new epoch: catch up from the store.
        self.state = SubState.RECOVERING
        self.buffer = [ev]
        self.buffer_bytes = len(ev.frame)
        self.session.request_repair(self)
