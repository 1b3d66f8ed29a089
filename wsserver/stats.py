"""Read models for ``GET /api/v1/stats`` (and so the admin console): frozen attrs snapshots of
nodes, connections with per-subscription seq lag, and channels. Built on demand, never live state;
in multi-node mode the other nodes' latest snapshots (``node.peers``) are merged in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

from wsserver import __version__

if TYPE_CHECKING:
    from wsserver.node import Node


@frozen
class SubscriptionStats:
    channel: str
    epoch: str
    state: str  # "live" or "recovering"
    last_sent_seq: int  # newest seq written to the socket
    last_queued_seq: int  # newest seq handed to the outbox
    head_seq: int  # newest seq of the channel seen by this node
    lag: int  # head_seq - last_sent_seq


@frozen
class ConnectionStats:
    connection_id: str
    node_id: str
    user_id: str | None
    remote: str
    connected_at: int  # ms since the Unix epoch
    connected_for: float  # seconds
    queue_depth: int
    queue_capacity: int
    queue_peak: int
    rtt_ms: float | None  # last heartbeat round trip
    token_expires_in: float | None  # seconds
    max_lag: int
    frames_in: int
    subscriptions: list[SubscriptionStats]


@frozen
class ChannelStats:
    channel: str
    head_seq: int
    subscribers: int
    worst_lag: int
    node_id: str


@frozen
class NodeStats:
    node_id: str
    version: str
    started_at: int
    uptime: float
    connections: int
    subscriptions: int
    channels: int
    events_published: int
    deliveries: int
    frames_in: int
    frames_out: int
    backplane: str
    healthy: bool
    draining: bool


@frozen
class Stats:
    generated_at: int
    nodes: list[NodeStats]
    connections: list[ConnectionStats]
    channels: list[ChannelStats]


def _counter(metric) -> int:
    return int(sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total")))


def node_stats(node: Node) -> Stats:
    """The cluster's view as this node knows it: its own fresh stats, then each peer's latest."""
    own = local_stats(node)
    if not node.peers:
        return own
    nodes, connections, channels = list(own.nodes), list(own.connections), list(own.channels)
    for peer in node.peers:
        nodes += peer.nodes
        connections += peer.connections
        channels += peer.channels
    return Stats(generated_at=own.generated_at, nodes=nodes, connections=connections, channels=channels)


def local_stats(node: Node) -> Stats:
    """This node's view: its sessions, their subscriptions' lag, its channels."""
    hub = node.hub
    now = node.wall_clock()
    connections: list[ConnectionStats] = []
    worst: dict[str, int] = {}
    subscription_count = 0
    for session in list(hub.sessions.values()):
        subs = []
        for sub in session.subscriptions.values():
            head = max(hub.heads.get(sub.channel, 0), sub.last_seq)
            lag = max(0, head - sub.last_sent_seq)
            worst[sub.channel] = max(worst.get(sub.channel, 0), lag)
            subs.append(
                SubscriptionStats(
                    channel=sub.channel,
                    epoch=sub.epoch,
                    state=sub.state.value,
                    last_sent_seq=sub.last_sent_seq,
                    last_queued_seq=sub.last_seq,
                    head_seq=head,
                    lag=lag,
                )
            )
        subscription_count += len(subs)
        box = session.outbox.statistics()
        connections.append(
            ConnectionStats(
                connection_id=session.id,
                node_id=node.node_id,
                user_id=session.user_id,
                remote=session.remote,
                connected_at=int(session.connected_at * 1000),
                connected_for=round(now - session.connected_at, 3),
                queue_depth=box.queued,
                queue_capacity=box.capacity,
                queue_peak=box.peak,
                rtt_ms=None if session.rtt is None else round(session.rtt * 1000, 3),
                token_expires_in=None if session.claims is None else round(session.token_expires_in() or 0.0, 3),
                max_lag=max((s.lag for s in subs), default=0),
                frames_in=session.frames_in,
                subscriptions=subs,
            )
        )
    channels = [
        ChannelStats(
            channel=name,
            head_seq=hub.heads.get(name, 0),
            subscribers=count,
            worst_lag=worst.get(name, 0),
            node_id=node.node_id,
        )
        for name, count in hub.channels()
    ]
    m = node.metrics
    this = NodeStats(
        node_id=node.node_id,
        version=__version__,
        started_at=int(node.started_at * 1000),
        uptime=round(now - node.started_at, 3),
        connections=len(hub.sessions),
        subscriptions=subscription_count,
        channels=len(channels),
        events_published=_counter(m.publishes),
        deliveries=hub.delivered,
        frames_in=_counter(m.frames_in),
        frames_out=_counter(m.frames_out),
        backplane=node.backplane.statistics().kind,
        healthy=node.healthy(),
        draining=node.draining,
    )
    return Stats(generated_at=int(now * 1000), nodes=[this], connections=connections, channels=channels)
