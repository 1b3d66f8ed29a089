"""One channel's position and the pure rule for each arriving event: deliver it, drop it as a
duplicate (by event id or by seq), or call it a gap (the client then resyncs with lastSeq)."""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Any, Final

from wsclient.positions import Position

#: Event ids remembered per channel to drop duplicates that carry an unexpected seq.
RECENT_IDS: Final = 1024


class Verdict(enum.Enum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    GAP = "gap"


class ChannelCursor:
    """Tracks what the application has received on one channel. No I/O."""

    __slots__ = ("channel", "seq", "epoch", "awaiting_snapshot", "_recent")

    def __init__(self, channel: str, position: Position | None) -> None:
        self.channel = channel
        self.seq: int | None = position.seq if position else None
        self.epoch: str | None = position.epoch if position else None
        self.awaiting_snapshot = False
        self._recent: OrderedDict[str, None] = OrderedDict()

    @property
    def position(self) -> Position | None:
        return None if self.seq is None else Position(self.seq, self.epoch)

    def subscribe_payload(self) -> dict[str, Any]:
        """The `subscribe` payload that resumes from this position (live only when there is none)."""
        payload: dict[str, Any] = {"channel": self.channel}
        if self.seq is not None:
            payload["lastSeq"] = self.seq
            if self.epoch is not None:
                payload["epoch"] = self.epoch
        return payload

    def on_subscribed(self, mode: str, epoch: str, head_seq: int) -> None:
        """Applies a `subscribed` answer: replay continues from here; none/reset start at the head;
        snapshot waits for the `snapshot` frame."""
        self.awaiting_snapshot = False
        if mode == "replay":
            self.epoch = epoch
            if self.seq is None:
                self.seq = 0
        elif mode == "snapshot":
            self.awaiting_snapshot = True
            self.epoch = epoch
        else:
            if mode == "reset" or epoch != self.epoch:
                self._recent.clear()
            self.seq, self.epoch = head_seq, epoch

    def on_snapshot(self, seq: int, epoch: str) -> None:
        self.seq, self.epoch, self.awaiting_snapshot = seq, epoch, False
        self._recent.clear()

    def check(self, seq: int, epoch: str, event_id: str) -> Verdict:
        """Decides the fate of one event without changing the position (see ``commit``)."""
        if event_id in self._recent:
            return Verdict.DUPLICATE
        if self.seq is None or self.awaiting_snapshot or epoch != self.epoch:
            return Verdict.GAP
        if seq <= self.seq:
            return Verdict.DUPLICATE
        if seq != self.seq + 1:
            return Verdict.GAP
        return Verdict.DELIVER

    def commit(self, seq: int, event_id: str) -> None:
        """Advances the position past a delivered event (call once the app has taken it)."""
        self.seq = seq
        self._recent[event_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)
