"""The SDK's copy of the close-code table matches the server's, and the pure per-channel
ordering rule (deliver / duplicate / gap) and backoff ceilings behave as documented."""

from __future__ import annotations

import random

import wsclient
from wsclient.cursor import ChannelCursor, Verdict
from wsserver.codes import CloseCode


def test_close_advice_matches_the_server_table():
    assert {int(c): c.reconnect.value for c in CloseCode} == {c: a.value for c, a in wsclient.CLOSE_ADVICE.items()}


def test_unknown_codes():
    assert wsclient.advice_for(1006) is wsclient.Reconnect.AT_ONCE
    assert wsclient.advice_for(4999) is wsclient.Reconnect.BACKOFF


def test_cursor_delivers_in_order_and_drops_duplicates():
    cur = ChannelCursor("c", wsclient.Position(3, "e1"))
    cur.on_subscribed("replay", "e1", 5)
    assert cur.check(3, "e1", "id3") is Verdict.DUPLICATE
    assert cur.check(5, "e1", "id5") is Verdict.GAP
    assert cur.check(4, "e1", "id4") is Verdict.DELIVER
    cur.commit(4, "id4")
    assert cur.check(4, "e1", "id4") is Verdict.DUPLICATE
    assert cur.check(9, "e1", "id4") is Verdict.DUPLICATE  # same event id, unexpected seq
    assert cur.check(5, "e2", "id5") is Verdict.GAP  # another epoch without a `subscribed`
    assert cur.subscribe_payload() == {"channel": "c", "lastSeq": 4, "epoch": "e1"}


def test_cursor_snapshot_and_reset_move_the_position():
    cur = ChannelCursor("c", None)
    assert cur.subscribe_payload() == {"channel": "c"}
    cur.on_subscribed("none", "e1", 7)
    assert cur.position == wsclient.Position(7, "e1")
    cur.on_subscribed("snapshot", "e2", 20)
    assert cur.check(11, "e2", "x") is Verdict.GAP  # nothing before the snapshot frame
    cur.on_snapshot(10, "e2")
    assert cur.check(11, "e2", "x") is Verdict.DELIVER
    cur.on_subscribed("reset", "e3", 2)
    assert cur.position == wsclient.Position(2, "e3")


def test_backoff_full_jitter_stays_under_the_ceiling():
    backoff, rng = wsclient.Backoff(base=0.5, cap=20), random.Random(7)
    assert [backoff.ceiling(n) for n in (0, 1, 2, 6, 40)] == [0.5, 1.0, 2.0, 20, 20]
    delays = [backoff.delay(3, rng) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in delays) and max(delays) > 2.0
