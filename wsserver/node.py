"""The node: channels as the rest of the server sees them. Publishing (store → fan-out), the
recovery plan for a subscribe (window, snapshot, epoch), channel info and disconnects; the
WebSocket sessions and the HTTP API both call these, so the two paths cannot drift."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import trio
from attrs import frozen

from wsserver.auth import TokenVerifier
from wsserver.backplane.base import Backplane
from wsserver.config import Config
from wsserver.hub import Hub
from wsserver.metrics import Metrics
from wsserver.protocol import Recovery
from wsserver.recovery import plan, window_allows
from wsserver.stats import Stats
from wsserver.store.base import AppendRequest, AppendResult, ChannelPosition, EventStore, PendingAppend, Snapshot

log = logging.getLogger("wsserver.node")

#: Idempotency scope of every HTTP API publish (CONTRACT §4: they share one).
API_SCOPE = "api"


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
        """Closes matching sessions with ``code``; returns how many."""
        targets = []
        if connection_id is not None:
            session = self.hub.sessions.get(connection_id)
            if session is not None and (user_id is None or session.user_id == user_id):
                targets.append(session)
        elif user_id is not None:
            targets = self.hub.sessions_of_user(user_id)
        for session in targets:
            session.close_soon(code, reason)
        return len(targets)
