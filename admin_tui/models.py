"""What the console shows, as frozen values and pure functions over the server's stats read models:
rates from successive snapshots, channel views, lag classification, sorting, filtering, formatting."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, Final

from attrs import evolve, frozen

from wsserver.protocol import converter
from wsserver.stats import ChannelStats, ConnectionStats, NodeStats, Stats

#: A subscription this many events behind its channel's head is "lagging" (red);
#: a connection whose outgoing queue is at least this full is too.
DEFAULT_LAG_THRESHOLD: Final = 100
QUEUE_ALARM_FRACTION: Final = 0.5
#: How many rate samples the sparklines keep (one per refresh).
HISTORY_LENGTH: Final = 200
#: How many events the channel detail shows.
RECENT_EVENTS: Final = 20


def parse_stats(obj: Any) -> Stats:
    """The JSON body of ``GET /api/v1/stats`` as the server's own attrs read models."""
    return converter.structure(obj, Stats)


# --------------------------------------------------------------------------- rates


@frozen
class Rates:
    """Per-second rates between two stats snapshots, summed over the nodes seen in both."""

    published: float = 0.0
    delivered: float = 0.0
    frames_in: float = 0.0
    frames_out: float = 0.0


def _per_second(before: int, after: int, seconds: float) -> float:
    # A counter that went down means the node restarted: no rate for this interval.
    return max(0, after - before) / seconds


def node_rates(prev: Stats | None, cur: Stats) -> Rates | None:
    """Rates from two successive snapshots (by the server's clock), or None without an interval."""
    if prev is None:
        return None
    seconds = (cur.generated_at - prev.generated_at) / 1000
    if seconds <= 0:
        return None
    before = {n.node_id: n for n in prev.nodes}
    totals = [0.0, 0.0, 0.0, 0.0]
    for node in cur.nodes:
        old = before.get(node.node_id)
        if old is None or old.started_at != node.started_at:
            continue
        pairs = (
            (old.events_published, node.events_published),
            (old.deliveries, node.deliveries),
            (old.frames_in, node.frames_in),
            (old.frames_out, node.frames_out),
        )
        for i, (a, b) in enumerate(pairs):
            totals[i] += _per_second(a, b, seconds)
    return Rates(*totals)


@frozen
class RateHistory:
    """The last ``HISTORY_LENGTH`` rate samples, oldest first (for the sparklines)."""

    samples: tuple[Rates, ...] = ()

    def push(self, rates: Rates | None, limit: int = HISTORY_LENGTH) -> RateHistory:
        if rates is None:
            return self
        return RateHistory((*self.samples, rates)[-limit:])

    def series(self, name: str) -> list[float]:
        return [getattr(s, name) for s in self.samples]

    @property
    def last(self) -> Rates | None:
        return self.samples[-1] if self.samples else None


BARS: Final = "▁▂▃▄▅▆▇█"


def spark(values: Sequence[float], width: int) -> str:
    """A one-line bar chart of the newest ``width`` values, one cell each, newest on the right,
    scaled from zero (not from the minimum, which would turn a steady 8-10/s into a sawtooth)."""
    shown = list(values)[-width:] if width > 0 else []
    top = max(shown, default=0.0)
    if top <= 0:
        return BARS[0] * len(shown)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in shown)


# --------------------------------------------------------------------------- overview


@frozen
class Totals:
    nodes: int
    healthy_nodes: int
    connections: int
    subscriptions: int
    channels: int
    lagging_connections: int
    worst_lag: int


def totals(stats: Stats, threshold: int = DEFAULT_LAG_THRESHOLD) -> Totals:
    return Totals(
        nodes=len(stats.nodes),
        healthy_nodes=sum(1 for n in stats.nodes if n.healthy),
        connections=sum(n.connections for n in stats.nodes),
        subscriptions=sum(n.subscriptions for n in stats.nodes),
        channels=len({c.channel for c in stats.channels}),
        lagging_connections=sum(1 for c in stats.connections if is_lagging(c, threshold)),
        worst_lag=max((c.max_lag for c in stats.connections), default=0),
    )


def node_health(node: NodeStats) -> str:
    if node.draining:
        return "draining"
    return "healthy" if node.healthy else "UNHEALTHY"


# --------------------------------------------------------------------------- connections


def is_lagging(conn: ConnectionStats, threshold: int = DEFAULT_LAG_THRESHOLD) -> bool:
    """Behind by at least ``threshold`` events on some channel, or a queue filling up."""
    if conn.max_lag >= threshold:
        return True
    return conn.queue_capacity > 0 and conn.queue_depth >= conn.queue_capacity * QUEUE_ALARM_FRACTION


def matches(conn: ConnectionStats, query: str) -> bool:
    """The connections filter: every whitespace-separated term must match.

    ``user:TEXT`` and ``channel:TEXT`` (or ``ch:``) look at one field; a bare term matches the user,
    a subscribed channel, the connection id or the remote address. Terms are case-insensitive
    substrings, or globs when they contain ``*``.
    """
    channels = [s.channel for s in conn.subscriptions]
    for term in query.split():
        field, sep, text = term.partition(":")
        if sep and field.lower() in ("user", "u"):
            fields = [conn.user_id or ""]
        elif sep and field.lower() in ("channel", "ch", "c"):
            fields = channels
        else:
            text = term
            fields = [conn.user_id or "", conn.connection_id, conn.remote, *channels]
        if not any(_term_matches(text, value) for value in fields):
            return False
    return True


def _term_matches(term: str, value: str) -> bool:
    term, value = term.lower(), value.lower()
    if "*" in term:
        return fnmatchcase(value, term)
    return term in value


@frozen
class Column:
    """One table column: its key (stable across refreshes), heading, and how to sort by it."""

    key: str
    label: str
    sort_value: Callable[[Any], Any] = str
    numeric: bool = True


def plain_columns(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    """Columns of a table that is not user-sortable: (key, label) pairs."""
    return tuple(Column(key, label) for key, label in pairs)


CONNECTION_COLUMNS: Final[tuple[Column, ...]] = (
    Column("id", "Connection", lambda c: c.connection_id, numeric=False),
    Column("user", "User", lambda c: (c.user_id or "").lower(), numeric=False),
    Column("lag", "Max lag", lambda c: c.max_lag),
    Column("queue", "Queue", lambda c: c.queue_depth),
    Column("subs", "Subs", lambda c: len(c.subscriptions)),
    Column("for", "For", lambda c: c.connected_for),
    Column("rtt", "RTT", lambda c: c.rtt_ms),
    Column("token", "Token exp", lambda c: c.token_expires_in),
    Column("node", "Node", lambda c: c.node_id, numeric=False),
    Column("remote", "Remote", lambda c: c.remote, numeric=False),
)

CHANNEL_COLUMNS: Final[tuple[Column, ...]] = (
    Column("channel", "Channel", lambda c: c.channel, numeric=False),
    Column("head", "Head seq", lambda c: c.head_seq),
    Column("subs", "Subs", lambda c: c.subscribers),
    Column("lag", "Worst lag", lambda c: c.worst_lag),
    Column("rate", "Ev/s", lambda c: c.rate),
    Column("epoch", "Epoch", lambda c: c.epoch or "", numeric=False),
    Column("oldest", "Oldest", lambda c: c.oldest_seq),
)


@frozen
class SortOrder:
    """Which column a table is sorted by. Numeric columns start descending (worst first)."""

    column: str
    descending: bool

    def cycle(self, columns: Sequence[Column]) -> SortOrder:
        keys = [c.key for c in columns]
        nxt = columns[(keys.index(self.column) + 1) % len(columns)]
        return SortOrder(nxt.key, nxt.numeric)

    def reversed(self) -> SortOrder:
        return evolve(self, descending=not self.descending)

    def label(self, columns: Sequence[Column]) -> str:
        heading = next(c.label for c in columns if c.key == self.column)
        return f"{heading} {'↓' if self.descending else '↑'}"


def sort_rows(rows: Iterable[Any], order: SortOrder, columns: Sequence[Column], ident: Callable[[Any], str]) -> list[Any]:
    """Rows in display order: by the chosen column, ties broken by id (always ascending), and
    rows whose value is unknown (None) last in either direction."""
    column = next(c for c in columns if c.key == order.column)
    ordered = sorted(rows, key=ident)
    known = [r for r in ordered if column.sort_value(r) is not None]
    unknown = [r for r in ordered if column.sort_value(r) is None]
    return sorted(known, key=column.sort_value, reverse=order.descending) + unknown


def connection_rows(stats: Stats, query: str, order: SortOrder) -> list[ConnectionStats]:
    chosen = [c for c in stats.connections if matches(c, query)]
    return sort_rows(chosen, order, CONNECTION_COLUMNS, lambda c: c.connection_id)


# --------------------------------------------------------------------------- channels


@frozen
class ChannelView:
    """A channel across the cluster: the highest head any node saw, subscribers summed."""

    channel: str
    head_seq: int
    subscribers: int
    worst_lag: int
    epoch: str | None  # as a subscriber saw it; None without subscribers
    oldest_seq: int | None  # from `GET /api/v1/channels/{channel}` when fetched
    rate: float | None  # events per second from successive head seqs
    nodes: tuple[str, ...]


def _merge(rows: Iterable[ChannelStats]) -> dict[str, tuple[int, int, int, tuple[str, ...]]]:
    merged: dict[str, tuple[int, int, int, tuple[str, ...]]] = {}
    for row in rows:
        head, subs, lag, nodes = merged.get(row.channel, (0, 0, 0, ()))
        merged[row.channel] = (max(head, row.head_seq), subs + row.subscribers, max(lag, row.worst_lag), (*nodes, row.node_id))
    return merged


def channel_views(prev: Stats | None, cur: Stats, oldest: Mapping[str, int] | None = None) -> list[ChannelView]:
    """One view per channel name, sorted by name; rate is None for the first snapshot."""
    now = _merge(cur.channels)
    before = _merge(prev.channels) if prev is not None else {}
    seconds = (cur.generated_at - prev.generated_at) / 1000 if prev is not None else 0.0
    epochs = {s.channel: s.epoch for c in cur.connections for s in c.subscriptions}
    views = []
    for name, (head, subs, lag, nodes) in sorted(now.items()):
        rate = None
        if seconds > 0 and name in before:
            rate = _per_second(before[name][0], head, seconds)
        views.append(ChannelView(name, head, subs, lag, epochs.get(name), (oldest or {}).get(name), rate, nodes))
    return views


def channel_rows(views: Iterable[ChannelView], query: str, order: SortOrder) -> list[ChannelView]:
    chosen = [v for v in views if all(_term_matches(t.partition(":")[2] or t, v.channel) for t in query.split())]
    return sort_rows(chosen, order, CHANNEL_COLUMNS, lambda v: v.channel)


def history_after(head_seq: int, count: int = RECENT_EVENTS) -> int:
    """The `after` of a history call that returns the last ``count`` events."""
    return max(0, head_seq - count)


# --------------------------------------------------------------------------- formatting


def format_duration(seconds: float | None) -> str:
    """Compact and stable width: ``42s``, ``3m07s``, ``5h02m``, ``2d03h``; ``—`` for unknown."""
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{sign}{s // 86400}d{s % 86400 // 3600:02d}h"


def format_rate(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def format_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"
