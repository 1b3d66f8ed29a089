"""The console's pure maths: stats decoding, rates from successive snapshots, channel views,
filters, sort order, formatting; and `run_admin`'s refusal of bad arguments."""

from __future__ import annotations

import pytest
from attrs import evolve

from admin_tui.app import run_admin
from admin_tui.demo import HEADS, demo_stats
from admin_tui.models import (
    CONNECTION_COLUMNS,
    RateHistory,
    SortOrder,
    channel_views,
    connection_rows,
    format_duration,
    is_lagging,
    matches,
    spark,
    node_rates,
    parse_stats,
    totals,
)
from wsserver.protocol import converter
from tests.admin_tui.helpers import ALICE, BOB, CAROL, DAVE, ERIN


def test_stats_round_trip_through_the_wire_form() -> None:
    stats = demo_stats(3)
    wire = converter.unstructure(stats)
    assert "generatedAt" in wire and "maxLag" in wire["connections"][0]
    assert parse_stats(wire) == stats


def test_rates_from_successive_snapshots() -> None:
    first, second = demo_stats(1), demo_stats(3)
    rates = node_rates(first, second)
    assert rates is not None
    node1, node3 = first.nodes[0], second.nodes[0]
    assert rates.published == pytest.approx((node3.events_published - node1.events_published) / 2)
    assert node_rates(None, second) is None
    assert node_rates(second, second) is None  # no time passed
    restarted = evolve(second, nodes=[evolve(second.nodes[0], started_at=second.nodes[0].started_at + 5)])
    assert node_rates(first, restarted).published == 0  # counters restarted: skipped
    history = RateHistory()
    for _ in range(70):
        history = history.push(rates, limit=60)
    assert len(history.series("published")) == 60 and history.push(None) is history


def test_sparkline_is_scaled_from_zero() -> None:
    assert spark([8.0, 10.0, 9.0], 10) == "▇█▇"  # steady traffic looks steady
    assert spark([0.0, 5.0, 10.0], 2) == "▅█"  # newest values, one cell each
    assert spark([0.0, 0.0], 5) == "▁▁" and spark([], 5) == "" and spark([1.0], 0) == ""


def test_channel_views_merge_nodes_and_derive_rates() -> None:
    views = {v.channel: v for v in channel_views(demo_stats(0), demo_stats(4), {"orders.eu": 7})}
    lobby = views["chat.lobby"]
    assert (lobby.head_seq, lobby.subscribers, lobby.worst_lag) == (HEADS["chat.lobby"] + 40, 4, 238)
    assert lobby.rate == pytest.approx(10.0)
    assert lobby.epoch == "3f9a1c2e-0" and lobby.oldest_seq is None
    assert views["orders.eu"].oldest_seq == 7
    assert all(v.rate is None for v in channel_views(None, demo_stats(0)))


def test_filters_and_lag() -> None:
    stats = demo_stats(0)
    by_id = {c.connection_id: c for c in stats.connections}
    assert matches(by_id[BOB], "user:bo") and not matches(by_id[BOB], "channel:bo")
    assert matches(by_id[ALICE], "channel:user.*") and matches(by_id[ALICE], "ALICE")
    assert matches(by_id[DAVE], "channel:orders 10.0.0.14")
    assert not matches(by_id[DAVE], "channel:orders user:bob")
    assert is_lagging(by_id[CAROL]) and not is_lagging(by_id[ERIN])
    assert is_lagging(by_id[ERIN], threshold=3)
    t = totals(stats)
    assert (t.connections, t.lagging_connections, t.worst_lag) == (5, 1, 238)


def test_sort_order_cycles_and_keeps_unknowns_last() -> None:
    order = SortOrder("lag", True)
    seen = []
    for _ in CONNECTION_COLUMNS:
        order = order.cycle(CONNECTION_COLUMNS)
        seen.append(order.column)
    assert seen[-1] == "lag" and len(set(seen)) == len(CONNECTION_COLUMNS)
    for descending in (True, False):
        rows = connection_rows(demo_stats(0), "", SortOrder("rtt", descending))
        assert rows[-1].connection_id == DAVE  # rtt unknown


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (90_061, "1d01h"), (-5, "-5s")],
)
def test_format_duration(seconds, text) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("url", "interval"), [("ftp://127.0.0.1:8081", 1.0), ("not a url", 1.0), ("http://127.0.0.1:8081", 0.0)]
)
def test_run_admin_refuses_bad_arguments(url, interval, capsys) -> None:
    assert run_admin(url, "k" * 16, interval) == 2
    assert "wsserver admin:" in capsys.readouterr().err
