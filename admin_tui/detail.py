"""Detail screens: one connection (its subscriptions with last sent seq and lag, and the disconnect
action) and one channel (its position and recent events from the history API). Both follow the
app's stats signal, so they stay live while open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from admin_tui.models import RECENT_EVENTS, format_duration, format_ms, format_rate, history_after, plain_columns
from admin_tui.render import event_cells, subscription_cells
from admin_tui.source import SourceError
from admin_tui.table import KeyedTable
from wsserver.stats import ConnectionStats, Stats

if TYPE_CHECKING:
    from admin_tui.app import AdminApp

SUBSCRIPTION_COLUMNS: Final = plain_columns(
    ("channel", "Channel"),
    ("state", "State"),
    ("sent", "Last sent"),
    ("queued", "Last queued"),
    ("head", "Head"),
    ("lag", "Lag"),
    ("epoch", "Epoch"),
)
EVENT_COLUMNS: Final = plain_columns(
    ("seq", "Seq"),
    ("type", "Type"),
    ("time", "Time (UTC)"),
    ("id", "Id"),
    ("payload", "Payload"),
)


class ConnectionScreen(Screen[None]):
    """Esc goes back; Enter on a subscription opens its channel; d disconnects."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("d", "disconnect", "Disconnect"),
        Binding("r", "app.refresh_now", "Refresh"),
        Binding("question_mark", "app.help", "Help"),
    ]

    app: AdminApp

    def __init__(self, connection_id: str) -> None:
        super().__init__()
        self.connection_id = connection_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="conn-head", classes="detail-head")
        yield KeyedTable(SUBSCRIPTION_COLUMNS, id="subscriptions")
        yield Footer()

    def on_mount(self) -> None:
        self.app.stats_signal.subscribe(self, self.show)
        if self.app.stats is not None:
            self.show(self.app.stats)
        self.query_one(KeyedTable).focus()

    def _find(self, stats: Stats) -> ConnectionStats | None:
        return next((c for c in stats.connections if c.connection_id == self.connection_id), None)

    def show(self, stats: Stats) -> None:
        conn = self._find(stats)
        head = self.query_one("#conn-head", Static)
        if conn is None:
            head.update(f"Connection [b]{self.connection_id}[/]: [b red]gone[/] (closed since the last refresh)")
            self.query_one(KeyedTable).sync([])
            return
        head.update(
            f"Connection [b]{conn.connection_id}[/]  user [b]{conn.user_id or '—'}[/]  node {conn.node_id}  from {conn.remote}\n"
            f"connected {format_duration(conn.connected_for)}   queue {conn.queue_depth}/{conn.queue_capacity} "
            f"(peak {conn.queue_peak})   rtt {format_ms(conn.rtt_ms)}   token expires in "
            f"{format_duration(conn.token_expires_in)}   frames in {conn.frames_in}   max lag [b]{conn.max_lag}[/]"
        )
        threshold = self.app.lag_threshold
        self.query_one(KeyedTable).sync([(s.channel, subscription_cells(s, threshold)) for s in conn.subscriptions])

    def action_disconnect(self) -> None:
        conn = self._find(self.app.stats) if self.app.stats is not None else None
        self.app.ask_disconnect(self.connection_id, conn.user_id if conn else None)

    def on_data_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.app.push_screen(ChannelScreen(str(event.row_key.value)))


class ChannelScreen(Screen[None]):
    """The channel's position and its last ``RECENT_EVENTS`` events; refetched when the head moves."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "reload", "Reload"),
        Binding("question_mark", "app.help", "Help"),
    ]

    app: AdminApp

    def __init__(self, channel: str) -> None:
        super().__init__()
        self.channel = channel
        self.loaded_head: int | None = None
        self.problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="chan-head", classes="detail-head")
        yield KeyedTable(EVENT_COLUMNS, id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.app.stats_signal.subscribe(self, lambda _stats: self.show())
        self.show()
        self.query_one(KeyedTable).focus()

    def show(self) -> None:
        self.render_head()
        view = self.app.channel_view(self.channel)
        if self.loaded_head is None or (view is not None and view.head_seq != self.loaded_head):
            self.load()

    def render_head(self) -> None:
        view = self.app.channel_view(self.channel)
        problem = f"\n[b red]{self.problem}[/]" if self.problem else ""
        if view is None:
            head = self.loaded_head if self.loaded_head is not None else "—"
            text = f"Channel [b]{self.channel}[/]  head seq [b]{head}[/]: no subscribers right now"
        else:
            oldest = "—" if view.oldest_seq is None else str(view.oldest_seq)
            text = (
                f"Channel [b]{view.channel}[/]  head seq [b]{view.head_seq}[/]  oldest {oldest}  epoch {view.epoch or '—'}\n"
                f"{view.subscribers} subscribers   worst lag [b]{view.worst_lag}[/]   "
                f"{format_rate(view.rate)} events/s   last {RECENT_EVENTS} events, newest first:"
            )
        self.query_one("#chan-head", Static).update(text + problem)

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="channel-history")
    async def load(self) -> None:
        source = self.app.source
        try:
            info = await source.channel_info(self.channel)
            events = await source.history(self.channel, history_after(info.head_seq), RECENT_EVENTS)
        except SourceError as exc:
            self.problem = exc.message
        else:
            if not self.is_attached:  # closed while the requests were out
                return
            self.problem = None
            self.loaded_head = info.head_seq
            self.app.remember_channel_info(info)
            self.query_one(KeyedTable).sync([(str(e.seq), event_cells(e)) for e in reversed(events)])
        self.render_head()
