"""Deterministic demo data for the console (tests, snapshots, the docs screenshot), and
`python -m admin_tui.demo OUT.svg`, which renders the documentation screenshot from the app itself."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

from admin_tui.source import FakeStatsSource
from wsserver.protocol import EventFrame
from wsserver.stats import ChannelStats, ConnectionStats, NodeStats, Stats, SubscriptionStats

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NODE = "vm-1:8080"
EPOCH = "3f9a1c2e-0"

#: (connection id, user, remote, seconds connected, rtt ms, token expires in s, [(channel, last sent)])
DEMO_CONNECTIONS: Sequence[tuple[str, str | None, str, float, float | None, float | None, list[tuple[str, int]]]] = (
    ("c0a1f3e5b7d90001", "alice", "10.0.0.11:50412", 3725.0, 38.0, 412.0, [("chat.lobby", 1500), ("user.alice", 42)]),
    ("c0a1f3e5b7d90002", "bob", "10.0.0.12:50980", 65.0, 122.0, 3541.0, [("chat.lobby", 1500)]),
    ("c0a1f3e5b7d90003", "carol", "10.0.0.13:41230", 812.0, 74.5, 95.0, [("chat.lobby", 1262), ("orders.eu", 9990)]),
    ("c0a1f3e5b7d90004", "dave", "10.0.0.14:39001", 12.0, None, 598.0, [("orders.eu", 10_010)]),
    ("c0a1f3e5b7d90005", "erin", "10.0.0.15:60110", 86_500.0, 9.2, 30.0, [("chat.lobby", 1497), ("orders.eu", 10_010)]),
)
HEADS = {"chat.lobby": 1500, "orders.eu": 10_010, "user.alice": 42}


def _total(step: int, per_second: Callable[[int], int]) -> int:
    """A monotonic counter: the sum of a wobbling per-second rate over ``step`` seconds."""
    return sum(per_second(i) for i in range(step))


def demo_stats(step: int = 0, *, lag: dict[str, int] | None = None, gone: Sequence[str] = ()) -> Stats:
    """Snapshot number ``step`` (one second apart). ``lag`` overrides a connection's lag on every
    channel it follows; ``gone`` leaves connections out."""
    heads = {name: head + step * 10 for name, head in HEADS.items()}
    connections = []
    for cid, user, remote, age, rtt, token, subs in DEMO_CONNECTIONS:
        if cid in gone:
            continue
        rows = []
        for channel, sent in subs:
            head = heads[channel]
            behind = min(head, (lag or {}).get(cid, HEADS[channel] - sent))
            rows.append(SubscriptionStats(channel, EPOCH, "live", head - behind, head - behind + min(behind, 3), head, behind))
        depth = max((r.lag for r in rows), default=0) // 2
        connections.append(
            ConnectionStats(
                connection_id=cid,
                node_id=NODE,
                user_id=user,
                remote=remote,
                connected_at=T0 - int(age * 1000),
                connected_for=age + step,
                queue_depth=min(depth, 2048),
                queue_capacity=2048,
                queue_peak=min(depth + 7, 2048),
                rtt_ms=rtt,
                token_expires_in=None if token is None else token - step,
                max_lag=max((r.lag for r in rows), default=0),
                frames_in=17 + step,
                subscriptions=rows,
            )
        )
    channels = [
        ChannelStats(
            channel=name,
            head_seq=head,
            subscribers=sum(1 for c in connections for s in c.subscriptions if s.channel == name),
            worst_lag=max((s.lag for c in connections for s in c.subscriptions if s.channel == name), default=0),
            node_id=NODE,
        )
        for name, head in sorted(heads.items())
    ]
    node = NodeStats(
        node_id=NODE,
        version="0.1.0",
        started_at=T0 - 90_000_000,
        uptime=90_000.0 + step,
        connections=len(connections),
        subscriptions=sum(len(c.subscriptions) for c in connections),
        channels=len(channels),
        events_published=50_000 + _total(step, lambda i: 30 + 7 * (i % 3)),
        deliveries=120_000 + _total(step, lambda i: 70 + 11 * (i % 4)),
        frames_in=9_000 + _total(step, lambda i: 12 + i % 5),
        frames_out=130_000 + _total(step, lambda i: 80 + 9 * (i % 3) + i),
        backplane="embedded",
        healthy=True,
        draining=False,
    )
    return Stats(generated_at=T0 + step * 1000, nodes=[node], connections=connections, channels=channels)


def demo_events(channel: str, head: int, count: int = 25) -> list[EventFrame]:
    return [
        EventFrame(
            id=f"{seq:08x}-0000-4000-8000-000000000000",
            timestamp=T0 - (head - seq) * 1500,
            type="message.new",
            channel=channel,
            seq=seq,
            epoch=EPOCH,
            payload={"text": f"message {seq}", "from": "alice"},
        )
        for seq in range(max(1, head - count + 1), head + 1)
    ]


def demo_source(step: int = 0) -> FakeStatsSource:
    source = FakeStatsSource(demo_stats(step))
    source.events = {name: demo_events(name, head) for name, head in HEADS.items()}
    return source


async def render_screenshot(path: str, size: tuple[int, int] = (112, 20), steps: int = 12) -> None:
    """Plays ``steps`` demo snapshots through the app (so the sparklines have data) and saves an SVG."""
    from admin_tui.app import AdminApp

    source = demo_source(0)
    app = AdminApp(source=source, interval=3600)
    async with app.run_test(size=size) as pilot:
        for step in range(steps):
            source.stats = demo_stats(step)
            app.action_refresh_now()
            while app.generation < step + 1:
                await pilot.pause(0.01)
        app.action_tab("overview")
        await pilot.pause()
        with open(path.replace(".svg", "-overview.svg"), "w") as f:
            f.write(app.export_screenshot(title="wsserver admin — overview"))
        app.action_tab("connections")
        await pilot.pause()
        with open(path, "w") as f:
            f.write(app.export_screenshot(title="wsserver admin"))


if __name__ == "__main__":
    asyncio.run(render_screenshot(sys.argv[1] if len(sys.argv) > 1 else "admin-console.svg"))
