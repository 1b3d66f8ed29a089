"""Table cells for each read model: rich Text with the console's colours (lagging rows red,
some lag yellow), numbers right-aligned. Pure functions, so tables diff them cell by cell."""

from __future__ import annotations

import time
from typing import Final

import orjson
from rich.text import Text

from admin_tui.models import ChannelView, format_duration, format_ms, format_rate, is_lagging
from admin_tui.table import Cells
from wsserver.protocol import EventFrame
from wsserver.stats import ConnectionStats, NodeStats, SubscriptionStats

LAGGING: Final = "bold red"
BEHIND: Final = "yellow"


def _cell(value: object, style: str = "", right: bool = False) -> Text:
    return Text(str(value), style=style, justify="right" if right else "left", no_wrap=True, overflow="ellipsis")


def _lag_style(lag: int, threshold: int) -> str:
    if lag >= threshold:
        return LAGGING
    return BEHIND if lag > 0 else ""


def connection_cells(c: ConnectionStats, threshold: int) -> Cells:
    row = LAGGING if is_lagging(c, threshold) else ""
    return (
        _cell(c.connection_id, row),
        _cell(c.user_id or "—", row),
        _cell(c.max_lag, row or _lag_style(c.max_lag, threshold), right=True),
        _cell(c.queue_depth, row, right=True),
        _cell(len(c.subscriptions), row, right=True),
        _cell(format_duration(c.connected_for), row, right=True),
        _cell(format_ms(c.rtt_ms), row, right=True),
        _cell(format_duration(c.token_expires_in), row, right=True),
        _cell(c.node_id, row),
        _cell(c.remote, row),
    )


def channel_cells(v: ChannelView, threshold: int) -> Cells:
    row = LAGGING if v.worst_lag >= threshold else ""
    return (
        _cell(v.channel, row),
        _cell(v.head_seq, row, right=True),
        _cell(v.subscribers, row, right=True),
        _cell(v.worst_lag, row or _lag_style(v.worst_lag, threshold), right=True),
        _cell(format_rate(v.rate), row, right=True),
        _cell(v.epoch or "—", row),
        _cell("—" if v.oldest_seq is None else v.oldest_seq, row, right=True),
    )


def subscription_cells(s: SubscriptionStats, threshold: int) -> Cells:
    row = LAGGING if s.lag >= threshold else ""
    return (
        _cell(s.channel, row),
        _cell(s.state, row),
        _cell(s.last_sent_seq, row, right=True),
        _cell(s.last_queued_seq, row, right=True),
        _cell(s.head_seq, row, right=True),
        _cell(s.lag, row or _lag_style(s.lag, threshold), right=True),
        _cell(s.epoch, row),
    )


def node_cells(n: NodeStats) -> Cells:
    health = "draining" if n.draining else "healthy" if n.healthy else "UNHEALTHY"
    style = "green" if health == "healthy" else LAGGING
    return (
        _cell(n.node_id),
        _cell(n.version),
        _cell(format_duration(n.uptime), right=True),
        _cell(n.connections, right=True),
        _cell(n.subscriptions, right=True),
        _cell(n.channels, right=True),
        _cell(n.backplane),
        _cell(health, style),
    )


def clock(ms: int) -> str:
    """``HH:MM:SS`` UTC of a protocol timestamp (UTC so every operator reads the same)."""
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))


def event_cells(e: EventFrame) -> Cells:
    return (
        _cell(e.seq, right=True),
        _cell(e.type),
        _cell(clock(e.timestamp)),
        _cell(e.id[:8]),
        _cell(orjson.dumps(e.payload).decode()[:200]),
    )
