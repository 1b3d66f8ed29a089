"""The overview tab: cluster totals, events in/out per second with sparklines (from successive
stats snapshots, one cell per refresh, newest right), and one row per node with its backplane
and health."""

from __future__ import annotations

from typing import Final

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Label, Static

from admin_tui.models import RateHistory, Totals, format_rate, plain_columns, spark
from admin_tui.render import node_cells
from admin_tui.table import KeyedTable
from wsserver.stats import Stats

#: (Rates attribute, label) of each sparkline row.
RATE_ROWS: Final = (
    ("published", "published/s"),
    ("delivered", "delivered/s"),
    ("frames_in", "frames in/s"),
    ("frames_out", "frames out/s"),
)

NODE_COLUMNS: Final = plain_columns(
    ("node", "Node"),
    ("version", "Version"),
    ("uptime", "Uptime"),
    ("conns", "Conns"),
    ("subs", "Subs"),
    ("chans", "Chans"),
    ("backplane", "Backplane"),
    ("health", "Health"),
)


def totals_text(t: Totals) -> str:
    lagging = f"[b red]{t.lagging_connections} lagging[/]" if t.lagging_connections else "0 lagging"
    health = f"{t.healthy_nodes}/{t.nodes} healthy" if t.healthy_nodes == t.nodes else f"[b red]{t.healthy_nodes}/{t.nodes} healthy[/]"
    return (
        f"[b]{t.nodes}[/] node{'s' if t.nodes != 1 else ''} ({health})   "
        f"[b]{t.connections}[/] connections   [b]{t.subscriptions}[/] subscriptions   "
        f"[b]{t.channels}[/] channels\n{lagging}   worst lag [b]{t.worst_lag}[/]"
    )


class Spark(Widget):
    """One rate's history as a bar line as wide as the widget (drawn at paint time, so a
    hidden tab or a resize never leaves it empty or stale)."""

    values: list[float] = []

    def show(self, values: list[float]) -> None:
        self.values = values
        self.refresh()

    def render(self) -> str:
        return spark(self.values, self.size.width)


class Overview(VerticalScroll):
    """Filled by ``show``; knows nothing about where the numbers come from."""

    def compose(self) -> ComposeResult:
        yield Static("waiting for the first stats…", id="totals")
        for attr, label in RATE_ROWS:
            with Horizontal(classes="rate-row"):
                yield Label(label, classes="rate-label")
                yield Label("—", id=f"rate-{attr}", classes="rate-value")
                yield Spark(id=f"spark-{attr}", classes="spark")
        yield KeyedTable(NODE_COLUMNS, id="nodes")

    def show(self, stats: Stats, totals: Totals, history: RateHistory) -> None:
        self.query_one("#totals", Static).update(totals_text(totals))
        last = history.last
        for attr, _ in RATE_ROWS:
            self.query_one(f"#rate-{attr}", Label).update(format_rate(None if last is None else getattr(last, attr)))
            self.query_one(f"#spark-{attr}", Spark).show(history.series(attr))
        self.query_one("#nodes", KeyedTable).sync([(n.node_id, node_cells(n)) for n in stats.nodes])
