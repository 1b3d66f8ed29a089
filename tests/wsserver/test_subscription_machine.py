"""The subscription state machine on its own (no connection, no store, no sockets): table tests
for every transition, with a recording owner standing in for the connection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsserver.store.base import StoredEvent
from wsserver.subscription import CATCH_UP_BUFFER_BYTES, LostPosition, SubState, Subscription


def ev(seq: int, epoch: str = "e1", size: int = 10) -> StoredEvent:
    return StoredEvent("c", seq, epoch, f"id{seq}", "a.b", 0, b"x" * size)


class Owner:
    def __init__(self, room: int = 1_000_000) -> None:
        self.sent: list[int] = []
        self.catch_ups: list[str] = []
        self.room = room

    def send_event(self, sub: Subscription, event: StoredEvent) -> bool:
        if len(self.sent) >= self.room:
            return False
        self.sent.append(event.seq)
        return True

    def start_catch_up(self, sub: Subscription, cause: str) -> None:
        self.catch_ups.append(cause)


def live(last_seq: int = 5, epoch: str = "e1", owner: Owner | None = None) -> tuple[Subscription, Owner]:
    owner = owner or Owner()
    sub = Subscription("c", owner)
    sub.start_at(epoch, last_seq)
    assert sub.finish_catch_up()
    return sub, owner


@pytest.mark.parametrize(
    "arrives, sent, state, catch_ups, last_seq",
    [
        ([6, 7, 8], [6, 7, 8], SubState.LIVE, [], 8),  # in order: straight to the owner
        ([6, 6, 5, 7], [6, 7], SubState.LIVE, [], 7),  # duplicates and late ones: dropped
        ([6, 8], [6], SubState.CATCHING_UP, ["gap"], 6),  # a gap: catch up from the store
        ([6, 7, 9, 10], [6, 7], SubState.CATCHING_UP, ["gap"], 7),  # ...and later events are buffered
    ],
)
def test_live_path(arrives, sent, state, catch_ups, last_seq):
    sub, owner = live()
    for seq in arrives:
        sub.deliver(ev(seq))
    assert (owner.sent, sub.state, owner.catch_ups, sub.last_seq) == (sent, state, catch_ups, last_seq)


def test_a_new_epoch_on_the_live_path_catches_up_and_keeps_the_event_for_the_merge():
    sub, owner = live()
    sub.deliver(ev(1, "e2"))
    assert sub.state is SubState.CATCHING_UP and owner.catch_ups == ["gap"] and [e.seq for e in sub.buffer] == [1]
    with pytest.raises(LostPosition):
        sub.finish_catch_up()  # the merge refuses another epoch: the caller re-plans
    sub.start_at("e2", 0)  # the re-plan: e2 from the start; the kept event is merged
    assert sub.finish_catch_up() and owner.sent == [1]


def test_catching_up_buffers_live_events_then_merges_exactly_once():
    owner = Owner()
    sub = Subscription("c", owner)
    for seq in (4, 5, 6):  # published while the store is read
        sub.deliver(ev(seq))
    assert owner.sent == [] and sub.state is SubState.CATCHING_UP
    sub.start_at("e1", 2)
    sub.accept_stored(ev(3))
    sub.accept_stored(ev(4))
    assert sub.finish_catch_up()  # 4 came from the store too: sent once
    assert owner.sent == [5, 6] and sub.state is SubState.LIVE and sub.last_seq == 6 and sub.buffer == []


@pytest.mark.parametrize(
    "last, stored, ok",
    [(2, ev(3), True), (2, ev(4), False), (2, ev(2), False), (2, ev(3, "e2"), False)],
)
def test_accept_stored_refuses_anything_that_does_not_continue(last, stored, ok):
    sub = Subscription("c", Owner())
    sub.start_at("e1", last)
    if ok:
        sub.accept_stored(stored)
        assert sub.last_seq == stored.seq
    else:
        with pytest.raises(LostPosition):
            sub.accept_stored(stored)
        assert sub.last_seq == last


def test_a_gap_between_the_store_and_the_buffer_means_read_again():
    sub = Subscription("c", Owner())
    sub.deliver(ev(9))
    sub.start_at("e1", 5)
    assert not sub.finish_catch_up() and sub.state is SubState.CATCHING_UP  # 6-8 are in the store only
    for seq in (6, 7, 8):
        sub.accept_stored(ev(seq))
    assert sub.finish_catch_up() and sub.owner.sent == [9]


def test_overflow_frees_the_buffer_and_means_read_again():
    sub = Subscription("c", Owner())
    sub.start_at("e1", 0)
    big = CATCH_UP_BUFFER_BYTES // 3
    for seq in range(1, 6):
        sub.deliver(ev(seq, size=big))
    assert sub.overflowed and sub.buffer == [] and sub.buffer_bytes == 0
    assert not sub.finish_catch_up() and not sub.overflowed  # the store has them all


def test_begin_catch_up_only_from_live_and_once():
    sub, owner = live()
    assert sub.begin_catch_up(None, "reconnect") and not sub.begin_catch_up(None, "audit")
    assert owner.catch_ups == ["reconnect"]
    sub.end()
    assert not sub.begin_catch_up(None, "audit")


def test_nothing_is_handed_on_after_end():
    sub, owner = live()
    sub.end()
    sub.deliver(ev(6))
    assert owner.sent == [] and not sub.active


def test_a_full_owner_stops_the_merge_without_advancing():
    owner = Owner(room=1)
    sub = Subscription("c", owner)
    for seq in (1, 2, 3):
        sub.deliver(ev(seq))
    sub.start_at("e1", 0)
    assert sub.finish_catch_up()  # the owner closes itself as a slow consumer
    assert owner.sent == [1] and sub.last_seq == 1


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 5),
    stored=st.integers(0, 10),
    live_seqs=st.lists(st.integers(1, 25), max_size=30),
)
def test_every_interleaving_delivers_consecutive_seqs_once(start, stored, live_seqs):
    """Whatever the live path brings (duplicates, reordering, gaps) around a catch-up, the owner
    gets start+1, start+2, … with no gap and no duplicate."""
    owner = Owner()
    sub = Subscription("c", owner)

    def from_store(seq: int) -> None:  # what the connection does with a stored event
        sub.accept_stored(ev(seq))
        owner.sent.append(seq)

    def catch_up() -> None:
        while not sub.finish_catch_up():
            from_store(sub.last_seq + 1)  # the store always has the next one

    sub.start_at("e1", start)
    for seq in live_seqs[: len(live_seqs) // 2]:
        sub.deliver(ev(seq))
    for seq in range(start + 1, start + stored + 1):
        from_store(seq)
    catch_up()
    for seq in live_seqs[len(live_seqs) // 2:]:
        sub.deliver(ev(seq))
        if sub.state is SubState.CATCHING_UP:
            catch_up()
    assert owner.sent == list(range(start + 1, start + 1 + len(owner.sent)))
