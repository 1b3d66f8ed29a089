"""`AdminApp`, the Textual admin console, and `run_admin`, its entry point for `wsserver admin`.

One worker polls the stats source: it awaits each request before sleeping, so requests never
overlap; a failure shows a banner and the next round tries again. Screens follow `stats_signal`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import ClassVar

import httpx
from attrs import evolve
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.signal import Signal
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from admin_tui.detail import ChannelScreen, ConnectionScreen
from admin_tui.dialogs import ConfirmScreen, DisconnectChoice, DisconnectScreen, HelpScreen
from admin_tui.models import (
    CHANNEL_COLUMNS,
    CONNECTION_COLUMNS,
    DEFAULT_LAG_THRESHOLD,
    ChannelView,
    Column,
    RateHistory,
    SortOrder,
    channel_rows,
    channel_views,
    connection_rows,
    node_rates,
    totals,
)
from admin_tui.overview import Overview
from admin_tui.render import channel_cells, clock, connection_cells
from admin_tui.source import HttpStatsSource, Problem, SourceError, StatsSource
from admin_tui.table import KeyedTable
from wsserver.api_types import ChannelInfo
from wsserver.stats import Stats

#: Column widths that keep the key columns visible in an 80-column terminal.
CONNECTION_WIDTHS = {"id": 16, "user": 10, "lag": 7, "queue": 5, "subs": 4, "for": 6, "rtt": 6, "token": 9}
CHANNEL_WIDTHS = {"channel": 20, "head": 8, "subs": 5, "lag": 9, "rate": 6, "epoch": 12, "oldest": 6}


class AdminApp(App[int]):
    """The console. ``source`` is any `StatsSource`; ``interval`` is seconds between polls."""

    TITLE = "wsserver admin"
    CSS_PATH = "admin.tcss"
    BINDINGS: ClassVar = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("1", "tab('overview')", "Overview", show=False),
        Binding("2", "tab('connections')", "Conns", show=False),
        Binding("3", "tab('channels')", "Channels", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("d", "disconnect", "Disconnect"),
        Binding("r", "refresh_now", "Refresh", show=False),
    ]

    def __init__(self, source: StatsSource, *, interval: float = 1.0, lag_threshold: int = DEFAULT_LAG_THRESHOLD) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.lag_threshold = lag_threshold
        self.stats: Stats | None = None
        self.history = RateHistory()
        self.channels: list[ChannelView] = []
        self.oldest: dict[str, int] = {}
        self.problem: SourceError | None = None
        self.generation = 0  # stats snapshots applied (tests wait on it)
        self.failures = 0  # failed polls in a row
        self.conn_filter = ""
        self.chan_filter = ""
        self.conn_order = SortOrder("lag", descending=True)
        self.chan_order = SortOrder("channel", descending=False)
        self.stats_signal: Signal[Stats] = Signal(self, "stats")
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="banner")
        with TabbedContent(initial="connections", id="tabs"):
            with TabPane("Overview [1]", id="overview"):
                yield Overview()
            with TabPane("Connections [2]", id="connections"):
                yield Input(placeholder="/ filter: user:NAME channel:NAME or any text", id="conn-filter", compact=True)
                yield Static(id="conn-status", classes="status")
                yield KeyedTable(CONNECTION_COLUMNS, id="conn-table", widths=CONNECTION_WIDTHS)
            with TabPane("Channels [3]", id="channels"):
                yield Input(placeholder="/ filter channels", id="chan-filter", compact=True)
                yield Static(id="chan-status", classes="status")
                yield KeyedTable(CHANNEL_COLUMNS, id="chan-table", widths=CHANNEL_WIDTHS)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.source.target
        self.query_one("#banner").display = False
        self.query_one("#conn-table").focus()
        self._render_status()
        self.poll()

    async def on_unmount(self) -> None:
        await self.source.aclose()

    # ------------------------------------------------------------------ polling

    @work(exclusive=True, group="poll")
    async def poll(self) -> None:
        """Fetch, apply, sleep; repeat. One request at a time, by construction."""
        while True:
            self._wake.clear()
            try:
                stats = await self.source.fetch_stats()
            except SourceError as exc:
                if not self.is_running:  # shutting down while the request was out
                    return
                self._show_problem(exc)
            else:
                if not self.is_running:
                    return
                self._apply(stats)
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass  # the interval passed: poll again

    def action_refresh_now(self) -> None:
        self._wake.set()

    def _show_problem(self, exc: SourceError) -> None:
        self.problem = exc
        self.failures += 1
        hint = ": check --api-key / WSSERVER_API_KEY" if exc.problem is Problem.UNAUTHORIZED else ""
        text = f"✗ {exc.message}{hint}. Retrying every {self.interval:g}s."
        if self.stats is not None:
            text += f" Showing data from {clock(self.stats.generated_at)} UTC."
        banner = self.query_one("#banner", Static)
        banner.update(text)
        banner.display = True

    def _apply(self, stats: Stats) -> None:
        previous, self.stats = self.stats, stats
        self.problem = None
        self.failures = 0
        self.query_one("#banner").display = False
        self.history = self.history.push(node_rates(previous, stats))
        self.channels = channel_views(previous, stats, self.oldest)
        self.generation += 1
        self.sub_title = f"{self.source.target} · {clock(stats.generated_at)} UTC"
        self._render_tables()
        self.query_one(Overview).show(stats, totals(stats, self.lag_threshold), self.history)
        self.stats_signal.publish(stats)

    def _render_tables(self) -> None:
        if self.stats is None:
            self._render_status()
            return
        conns = connection_rows(self.stats, self.conn_filter, self.conn_order)
        self.query_one("#conn-table", KeyedTable).sync(
            [(c.connection_id, connection_cells(c, self.lag_threshold)) for c in conns]
        )
        chans = channel_rows(self.channels, self.chan_filter, self.chan_order)
        self.query_one("#chan-table", KeyedTable).sync([(v.channel, channel_cells(v, self.lag_threshold)) for v in chans])
        self._render_status(len(conns), len(chans))

    def _render_status(self, conns: int | None = None, chans: int | None = None) -> None:
        typing = isinstance(self.focused, Input)

        def line(count: int | None, total: int, query: str, order: SortOrder, columns: tuple[Column, ...]) -> str:
            shown = "…" if count is None else f"{count}" if not query else f"{count} of {total}"
            where = f" matching [b]{query}[/]" if query else ""
            hint = "typing a filter: Enter keeps it, Esc clears it" if typing else "s sort, S reverse, / filter"
            return f"{shown} shown{where} · sorted by {order.label(columns)} · [dim]{hint}[/]"

        total_c = len(self.stats.connections) if self.stats else 0
        self.query_one("#conn-status", Static).update(
            line(conns, total_c, self.conn_filter, self.conn_order, CONNECTION_COLUMNS)
        )
        self.query_one("#chan-status", Static).update(
            line(chans, len(self.channels), self.chan_filter, self.chan_order, CHANNEL_COLUMNS)
        )

    # ------------------------------------------------------------------ state for screens

    def channel_view(self, channel: str) -> ChannelView | None:
        return next((v for v in self.channels if v.channel == channel), None)

    def remember_channel_info(self, info: ChannelInfo) -> None:
        """Channel details fetched by a screen fill the channels table's oldest seq and epoch."""
        self.oldest[info.channel] = info.oldest_seq
        self.channels = [
            evolve(v, epoch=v.epoch or info.epoch, oldest_seq=info.oldest_seq) if v.channel == info.channel else v
            for v in self.channels
        ]
        self._render_tables()

    # ------------------------------------------------------------------ actions

    MAIN_SCREEN_ONLY: ClassVar = frozenset({"tab", "filter", "sort", "reverse", "disconnect"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Table actions belong to the main screen; details and dialogs have their own keys."""
        if action in self.MAIN_SCREEN_ONLY and self.screen is not self.screen_stack[0]:
            return False
        return True

    @property
    def active_tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        focus = {"overview": "#nodes", "connections": "#conn-table", "channels": "#chan-table"}[tab]
        self.query_one(focus).focus()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_filter(self) -> None:
        if self.active_tab == "overview":
            self.action_tab("connections")
        target = "#chan-filter" if self.active_tab == "channels" else "#conn-filter"
        self.query_one(target, Input).focus()

    def _table_for_tab(self) -> KeyedTable:
        return self.query_one("#chan-table" if self.active_tab == "channels" else "#conn-table", KeyedTable)

    def action_sort(self) -> None:
        if self.active_tab == "channels":
            self.chan_order = self.chan_order.cycle(CHANNEL_COLUMNS)
        else:
            self.conn_order = self.conn_order.cycle(CONNECTION_COLUMNS)
        self._render_tables()

    def action_reverse(self) -> None:
        if self.active_tab == "channels":
            self.chan_order = self.chan_order.reversed()
        else:
            self.conn_order = self.conn_order.reversed()
        self._render_tables()

    @on(DataTable.HeaderSelected)
    def sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if event.data_table.id == "conn-table":
            same = self.conn_order.column == column
            numeric = next(c.numeric for c in CONNECTION_COLUMNS if c.key == column)
            self.conn_order = self.conn_order.reversed() if same else SortOrder(column, numeric)
        elif event.data_table.id == "chan-table":
            same = self.chan_order.column == column
            numeric = next(c.numeric for c in CHANNEL_COLUMNS if c.key == column)
            self.chan_order = self.chan_order.reversed() if same else SortOrder(column, numeric)
        self._render_tables()

    @on(Input.Changed, "#conn-filter")
    def filter_connections(self, event: Input.Changed) -> None:
        self.conn_filter = event.value.strip()
        self._render_tables()

    @on(Input.Changed, "#chan-filter")
    def filter_channels(self, event: Input.Changed) -> None:
        self.chan_filter = event.value.strip()
        self._render_tables()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self._render_status(*self._shown())

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        self._render_status(*self._shown())

    def _shown(self) -> tuple[int | None, int | None]:
        tables = self.query("#conn-table, #chan-table").results(KeyedTable)
        counts = [t.row_count if self.stats is not None else None for t in tables]
        return counts[0], counts[1]

    @on(Input.Submitted)
    def filter_done(self, event: Input.Submitted) -> None:
        self._table_for_tab().focus()

    def on_key(self, event: events.Key) -> None:
        # Esc in a filter clears it and returns to the table.
        if event.key == "escape" and isinstance(self.focused, Input) and self.screen is self.screen_stack[0]:
            self.focused.value = ""
            self._table_for_tab().focus()
            event.stop()

    @on(DataTable.RowSelected, "#conn-table")
    def open_connection(self, event: DataTable.RowSelected) -> None:
        self.push_screen(ConnectionScreen(str(event.row_key.value)))

    @on(DataTable.RowSelected, "#chan-table")
    def open_channel(self, event: DataTable.RowSelected) -> None:
        self.push_screen(ChannelScreen(str(event.row_key.value)))

    def action_disconnect(self) -> None:
        if self.active_tab != "connections" or self.stats is None:
            self.notify("Select a connection in the Connections tab to disconnect it.", severity="warning")
            return
        key = self.query_one("#conn-table", KeyedTable).selected_key
        if key is None:
            self.notify("No connection selected.", severity="warning")
            return
        user = next((c.user_id for c in self.stats.connections if c.connection_id == key), None)
        self.ask_disconnect(key, user)

    def ask_disconnect(self, connection_id: str, user: str | None) -> None:
        """Close code dialog, then confirmation, then the API call."""

        def chosen(choice: DisconnectChoice | None) -> None:
            if choice is not None:
                self.push_screen(ConfirmScreen(choice), lambda yes: self.disconnect(choice) if yes else None)

        self.push_screen(DisconnectScreen(connection_id, user), chosen)

    @work(group="disconnect")
    async def disconnect(self, choice: DisconnectChoice) -> None:
        try:
            count = await self.source.disconnect(choice.connection_id, choice.code, choice.reason)
        except SourceError as exc:
            self.notify(f"Disconnect failed: {exc.message}", severity="error", timeout=8)
            return
        if count:
            self.notify(f"Closed {choice.connection_id} with {choice.code} ({choice.meaning}).")
        else:
            self.notify(f"{choice.connection_id} was already gone.", severity="warning")
        self.action_refresh_now()


def run_admin(url: str, api_key: str | None, interval: float) -> int:
    """`wsserver admin`: runs the console against the internal API at ``url`` until quit."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        print(f"wsserver admin: invalid --url {url!r}: {exc}", file=sys.stderr)
        return 2
    if parsed.scheme not in ("http", "https") or not parsed.host:
        print(f"wsserver admin: --url must be http(s)://HOST:PORT, got {url!r}", file=sys.stderr)
        return 2
    if interval <= 0:
        print("wsserver admin: --interval must be positive", file=sys.stderr)
        return 2
    app = AdminApp(HttpStatsSource(url, api_key, timeout=max(2.0, min(10.0, interval * 5))), interval=interval)
    result = app.run()
    return result or 0
