"""Pure sequence arithmetic for subscribe-with-recovery: the replay window rule and the
choice between replay, snapshot, reset and none (CONTRACT §4). No I/O; table-tested."""

from __future__ import annotations

from wsserver.config import Retention
from wsserver.protocol import Recovery


def window_allows(after_seq: int, head_seq: int, next_event_ts: int | None, now_ms: int, retention: Retention) -> bool:
    """Whether events after ``after_seq`` may be replayed: after_seq ≥ head − max_events and
    event after_seq+1 is younger than the ttl (``next_event_ts`` None: that event is not stored).

    ``after_seq == head_seq`` is always inside the window (nothing to replay)."""
    if after_seq > head_seq or after_seq < 0:
        return False
    if after_seq == head_seq:
        return True
    if after_seq < head_seq - retention.max_events:
        return False
    if next_event_ts is None:
        return False
    return next_event_ts > now_ms - retention.ttl * 1000


def plan(
    *,
    last_seq: int | None,
    client_epoch: str | None,
    epoch: str,
    replay_ok: bool,
    snapshot_ok: bool,
) -> str:
    """Picks the recovery mode for a subscribe.

    Args:
        last_seq: the client's lastSeq, None for live-only.
        client_epoch: the client's epoch, None when it sent none.
        epoch: the channel's current epoch.
        replay_ok: ``window_allows(last_seq, …)`` (ignored when last_seq is None).
        snapshot_ok: a snapshot of the current epoch exists and the events after it are in the window.
    """
    if last_seq is None:
        return Recovery.NONE
    if (client_epoch is None or client_epoch == epoch) and replay_ok:
        return Recovery.REPLAY
    return Recovery.SNAPSHOT if snapshot_ok else Recovery.RESET


def merge_buffer(buffered: list, after_seq: int) -> list | None:
    """Orders buffered live events, drops those at or below ``after_seq`` and duplicates, and
    returns them when they continue ``after_seq`` without a gap; None when a gap remains
    (the caller reads the store again). Items need ``.seq``."""
    pending = sorted({ev.seq: ev for ev in buffered if ev.seq > after_seq}.values(), key=lambda ev: ev.seq)
    expected = after_seq + 1
    for ev in pending:
        if ev.seq != expected:
            return None
        expected += 1
    return pending
