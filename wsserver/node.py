"""The node: channels as the rest of the server sees them. Publishing (store → announce → hub),
the recovery plan for a subscribe (window, snapshot, epoch), reads, snapshots, channel info,
disconnects, health and statistics; WebSocket connections and the HTTP API both call these (never
the store behind it), so the two paths cannot drift."""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import trio
from attrs import frozen

from wsserver import __version__
from wsserver.auth import TokenVerifier
from wsserver.backplane.base import Backplane
from wsserver.config import Config
from wsserver.hub import Hub
from wsserver.metrics import Metrics
from wsserver.protocol import Recovery
from wsserver.recovery import plan, window_allows
from wsserver.stats import ChannelStats, ClosedConnection, NodeStats, Stats, merge
from wsserver.store.base import (
    AppendRequest,
    AppendResult,
    ChannelPosition,
    EventStore,
    PendingAppend,
    Snapshot,
    StoredEvent,
)
from wsserver.timer_wheel import TimerWheel

log = logging.getLogger("wsserver.node")

#: Idempotency scope of every HTTP API publish (CONTRACT §4: they share one).
API_SCOPE = "api"
#: Recently closed connections kept for the admin console and `/api/v1/stats`.
RECENTLY_CLOSED: Final = 100


def user_scope(user_id: str) -> str:
    """Idempotency scope of a user's client publishes (one user cannot touch another's ids)."""
    return "user:" + user_id


@frozen
class SubscriptionPlan:
    """What a subscribe will do: the mode, where the channel stands, and where delivery starts
    (events after ``start_seq`` follow ``subscribed``, after the snapshot when there is one)."""

    mode: str
    epoch: str
    head_seq: int
    start_seq: int
    snapshot: Snapshot | None


class Node:
    """One server node. Everything here runs in the Trio thread."""

    def __init__(
        self,
        *,
        config: Config,
        store: EventStore,
        backplane: Backplane,
        hub: Hub,
        metrics: Metrics,
        verifier: TokenVerifier,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.backplane = backplane
        self.hub = hub
        hub.on_channel_idle = backplane.unwatch
        self.metrics = metrics
        self.verifier = verifier
        self.wall_clock = wall_clock
        self.node_id = config.node_id or f"{socket.gethostname()}:{config.port}"
        self.started_at = wall_clock()
        self.draining = False
        #: catch-ups (subscribe replays and repairs) reading and writing a page at the same time
        self.catch_up_slots = trio.CapacityLimiter(config.catch_up_concurrency)
        #: every connection's deadlines (heartbeat, auth timeout, token), in one task
        self.timers = TimerWheel()
        self.recently_closed: deque[ClosedConnection] = deque(maxlen=RECENTLY_CLOSED)
        #: the other nodes' latest stats (multi-node mode: refreshed by the cluster presence)
        self.peers: list[Stats] = []

    def now_ms(self) -> int:
        return int(self.wall_clock() * 1000)

    def _request(
        self, channel: str, event_type: str, data_json: bytes, event_id: str, idem_scope: str, idem_key: str | None
    ) -> AppendRequest:
        return AppendRequest(
            channel=channel,
            event_type=event_type,
            data_json=data_json,
            event_id=event_id,
            timestamp=self.now_ms(),
            idem_scope=idem_scope,
            idem_key=idem_key,
        )

    async def publish(
        self,
        channel: str,
        event_type: str,
        data_json: bytes,
        *,
        event_id: str,
        idem_scope: str,
        idem_key: str | None,
        source: str,
    ) -> AppendResult:
        """Appends durably and fans out (through the store's commit announcement).

        Raises:
            StoreUnavailable: nothing was acknowledged; the caller may retry with the same id.
        """
        started = trio.current_time()
        result = await self.store.append(self._request(channel, event_type, data_json, event_id, idem_scope, idem_key))
        self.count_publish(result, started, source)
        return result

    def begin_publish(
        self, channel: str, event_type: str, data_json: bytes, *, event_id: str, idem_scope: str, idem_key: str | None
    ) -> PendingAppend:
        """Queues a publish without waiting, in call order (one connection's publishes get
        their seqs in frame order and share group commits); see ``EventStore.append_nowait``."""
        return self.store.append_nowait(self._request(channel, event_type, data_json, event_id, idem_scope, idem_key))

    def count_publish(self, result: AppendResult, started: float, source: str) -> None:
        if result.duplicate:
            self.metrics.duplicate_publishes.inc()
        else:
            self.metrics.publishes.labels(source).inc()
            self.metrics.publish_latency.observe(trio.current_time() - started)

    async def watch_channel(self, channel: str) -> None:
        """Makes sure this node receives every event of ``channel`` appended from now on
        (called after a subscription is registered in the hub, before the store is read)."""
        await self.backplane.watch(channel)

    async def plan_subscription(self, channel: str, last_seq: int | None, client_epoch: str | None) -> SubscriptionPlan:
        """Reads the channel's position (and snapshot, when needed) and applies the window rule."""
        store = self.store
        pos = await store.position(channel)
        retention = self.config.retention_for(channel)
        now = self.now_ms()
        replay_ok = False
        if last_seq is not None and (client_epoch is None or client_epoch == pos.epoch):
            replay_ok = await self._in_window(pos, last_seq, now, retention)
        snapshot = None
        if last_seq is not None and not replay_ok:
            snap = await store.get_snapshot(channel)
            if snap is not None and snap.epoch == pos.epoch and snap.seq <= pos.head_seq:
                if await self._in_window(pos, snap.seq, now, retention):
                    snapshot = snap
        mode = plan(
            last_seq=last_seq,
            client_epoch=client_epoch,
            epoch=pos.epoch,
            replay_ok=replay_ok,
            snapshot_ok=snapshot is not None,
        )
        self.metrics.recoveries.labels(mode).inc()
        if mode == Recovery.REPLAY:
            assert last_seq is not None
            start = last_seq
        elif mode == Recovery.SNAPSHOT:
            assert snapshot is not None
            start = snapshot.seq
        else:
            start = pos.head_seq
        return SubscriptionPlan(mode, pos.epoch, pos.head_seq, start, snapshot if mode == Recovery.SNAPSHOT else None)

    async def _in_window(self, pos: ChannelPosition, after_seq: int, now: int, retention) -> bool:
        if after_seq >= pos.head_seq or after_seq < pos.head_seq - retention.max_events:
            return window_allows(after_seq, pos.head_seq, None, now, retention)
        nxt = await self.store.read_one(pos.channel, after_seq + 1)
        return window_allows(after_seq, pos.head_seq, None if nxt is None else nxt.timestamp, now, retention)

    # ------------------------------------------------------------------ reads (HTTP API, catch-up)

    async def position(self, channel: str) -> ChannelPosition:
        return await self.store.position(channel)

    async def read_after(self, channel: str, after_seq: int, limit: int, max_bytes: int | None = None) -> list[StoredEvent]:
        return await self.store.read_after(channel, after_seq, limit, max_bytes)

    async def put_snapshot(self, channel: str, seq: int, state_json: bytes) -> Snapshot:
        return await self.store.put_snapshot(channel, seq, state_json)

    # ------------------------------------------------------------------ health, disconnects, statistics

    def healthy(self) -> bool:
        """Serving: the store takes writes, the backplane delivers, and the node is not draining."""
        return not self.health_problem()

    def health_problem(self) -> str:
        """Why this node cannot serve publishes right now, in plain words ("" when it can)."""
        if self.draining:
            return "draining: the node is shutting down"
        if not self.store.healthy:
            return self.store.problem or "the event store is not available"
        if not self.backplane.healthy:
            return "the backplane is not delivering: " + (self.backplane.statistics().detail or "not connected")
        return ""

    def disconnect(self, *, user_id: str | None, connection_id: str | None, code: int, reason: str) -> int:
        """Closes matching connections with ``code``; returns how many."""
        targets = []
        if connection_id is not None:
            connection = self.hub.connections.get(connection_id)
            if connection is not None and (user_id is None or connection.user_id == user_id):
                targets.append(connection)
        elif user_id is not None:
            targets = self.hub.connections_of_user(user_id)
        for connection in targets:
            connection.close_soon(code, reason)
        return len(targets)

    def note_closed(self, connection, code: int, reason: str) -> None:
        """A connection ended: counted by close code and kept in the recently-closed list."""
        self.metrics.closes.labels(str(code)).inc()
        self.recently_closed.append(
            ClosedConnection(
                connection_id=connection.id,
                node_id=self.node_id,
                user_id=connection.user_id,
                remote=connection.remote,
                code=code,
                reason=reason,
                closed_at=self.now_ms(),
                connected_for=round(self.wall_clock() - connection.connected_at, 3),
            )
        )

    def statistics(self) -> Stats:
        """This node's view: its connections, their subscriptions' lag, its channels."""
        hub = self.hub
        now = self.wall_clock()
        connections = [c.statistics(now, hub.heads) for c in list(hub.connections.values())]
        worst: dict[str, int] = {}
        for c in connections:
            for s in c.subscriptions:
                worst[s.channel] = max(worst.get(s.channel, 0), s.lag)
        channels = [
            ChannelStats(channel=name, head_seq=hub.heads.get(name, 0), subscribers=count,
                         worst_lag=worst.get(name, 0), node_id=self.node_id)
            for name, count in hub.channels()
        ]
        m = self.metrics
        this = NodeStats(
            node_id=self.node_id,
            version=__version__,
            started_at=int(self.started_at * 1000),
            uptime=round(now - self.started_at, 3),
            connections=len(connections),
            subscriptions=sum(len(c.subscriptions) for c in connections),
            channels=len(channels),
            events_published=int(sum(s.value for f in m.publishes.collect() for s in f.samples if s.name.endswith("_total"))),
            deliveries=hub.delivered,
            frames_in=m.traffic.frames_in,
            frames_out=m.traffic.frames_out,
            backplane=self.backplane.statistics().kind,
            healthy=self.healthy(),
            draining=self.draining,
        )
        return Stats(generated_at=int(now * 1000), nodes=[this], connections=connections, channels=channels,
                     recently_closed=list(self.recently_closed))

    def cluster_statistics(self) -> Stats:
        """This node's fresh statistics with every peer's latest (multi-node mode)."""
        return merge(self.statistics(), self.peers)
