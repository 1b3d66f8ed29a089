"""Read models for ``GET /api/v1/stats`` (and so the admin console and ``/metrics``): frozen
attrs snapshots of nodes, connections with per-subscription seq lag, and channels. Each part
builds its own (``Connection.statistics()``, ``Node.statistics()``); this module only defines
them and merges the other nodes' latest snapshots in (multi-node mode). No live state here."""

from __future__ import annotations

from attrs import field, frozen


@frozen
class SubscriptionStats:
    channel: str
    epoch: str
    state: str  # "live" or "catching_up"
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
class ClosedConnection:
    """A connection that ended recently: who, how (the close code and reason) and when."""

    connection_id: str
    node_id: str
    user_id: str | None
    remote: str
    code: int
    reason: str
    closed_at: int  # ms since the Unix epoch
    connected_for: float  # seconds


@frozen
class Stats:
    generated_at: int
    nodes: list[NodeStats]
    connections: list[ConnectionStats]
    channels: list[ChannelStats]
    recently_closed: list[ClosedConnection] = field(factory=list)


def merge(own: Stats, peers: list[Stats]) -> Stats:
    """The cluster's view as one node knows it: its own fresh stats, then each peer's latest."""
    if not peers:
        return own
    nodes, connections, channels = list(own.nodes), list(own.connections), list(own.channels)
    closed = list(own.recently_closed)
    for peer in peers:
        nodes += peer.nodes
        connections += peer.connections
        channels += peer.channels
        closed += peer.recently_closed
    closed.sort(key=lambda c: c.closed_at, reverse=True)
    return Stats(generated_at=own.generated_at, nodes=nodes, connections=connections, channels=channels,
                 recently_closed=closed[:100])
