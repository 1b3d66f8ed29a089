"""Fan-out between nodes over Redis pub/sub (sharded pub/sub on a cluster), with loss repair:
one pub/sub connection per node (per shard on a cluster), subscribed to a channel only while
the hub has local subscribers, and three ways to notice lost events.

* A seq gap on the live path: the subscription catches up from the store (``subscription.py``).
* A pub/sub reconnect: once every watched channel is subscribed again, every LIVE local
  subscription catches up from the store (``Hub.catch_up``).
* A periodic audit per watched channel: a subscription still behind the head the store reported
  one round earlier is stalled (its last events were lost and nothing followed): it catches up.

A canary message this node publishes to itself proves the round trip; when it does not come back
the connection is torn down and rebuilt, and ``healthy`` (so ``/healthz``) is false meanwhile,
with the reason in ``statistics().detail`` and the ``wsserver_backplane_problem`` metric.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any, Final

import anyio
import trio
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy
from prometheus_client import CollectorRegistry, Counter, Gauge

from wsserver.backplane.base import BackplaneStatistics
from wsserver.hub import Hub
from wsserver.redis_link import RedisLink, channel_of, pubsub_channel
from wsserver.store.base import ChannelPosition, EventStore, StoreUnavailable
from wsserver.store.redis import decode_blob

log = logging.getLogger("wsserver.backplane")

#: Seconds ``watch`` waits for Redis to confirm a subscription before the subscribe fails.
WATCH_TIMEOUT: Final = 5.0
#: Seconds Redis gets to acknowledge (S)SUBSCRIBE on the pub/sub connection.
SUBSCRIBE_TIMEOUT: Final = 3.0
#: Reconnect back-off: first delay and cap (seconds).
BACKOFF_FIRST: Final = 0.05
BACKOFF_MAX: Final = 2.0
#: Channels whose positions the audit reads at once.
AUDIT_CONCURRENCY: Final = 32
#: Rounds the canary may miss before the connection counts as broken.
CANARY_MISSES: Final = 3


class _Broken(Exception):
    """The pub/sub connection must be rebuilt (canary lost)."""


class RedisBackplane:
    """See the module docstring and the contract in ``wsserver.backplane.base``.

    Args:
        link: the node's open Redis connection.
        hub: where received events go.
        store: for the audit (channel positions).
        interval: seconds between canary round trips and between audits.
        registry: Prometheus registry for the backplane's metrics.
    """

    def __init__(
        self,
        link: RedisLink,
        hub: Hub,
        store: EventStore,
        *,
        interval: float = 5.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.link = link
        self.hub = hub
        self.store = store
        self.interval = interval
        self._canary = pubsub_channel(f"canary:{secrets.token_hex(8)}").encode()
        self._want: dict[str, trio.Event] = {}  # channel -> set once Redis confirmed the subscription
        self._subscribed: set[str] = set()
        self._ops_tx, self._ops_rx = trio.open_memory_channel[str](math.inf)
        self._pubsub: Any = None
        self._connected = False
        self._problem = "not connected yet"
        self._canary_nonce = b""
        self._canary_back = trio.Event()
        self._audit_seen: dict[str, ChannelPosition] = {}
        self._session_scope: trio.CancelScope | None = None
        self._broken = ""
        self.received = 0
        self.reconnects = 0
        self.canary_rtt: float | None = None
        registry = registry or CollectorRegistry()
        self._m_reconnects = Counter(
            "wsserver_backplane_reconnects", "Pub/sub connections rebuilt", registry=registry
        )
        self._m_problem = Gauge(
            "wsserver_backplane_problem", "1 while the backplane is broken, labelled with why", ["reason"],
            registry=registry,
        )
        Gauge("wsserver_backplane_healthy", "1 when the backplane round-trips messages", registry=registry).set_function(
            lambda: float(self.healthy)
        )
        Gauge("wsserver_backplane_canary_seconds", "Last canary round trip", registry=registry).set_function(
            lambda: self.canary_rtt or 0.0
        )
        self._set_problem("not connected yet")

    # ------------------------------------------------------------------ contract

    @property
    def healthy(self) -> bool:
        return self._connected and not self._problem

    def statistics(self) -> BackplaneStatistics:
        kind = "redis-cluster" if self.link.cluster else "redis"
        return BackplaneStatistics(kind=kind, healthy=self.healthy, channels=len(self._subscribed), detail=self._problem)

    async def watch(self, channel: str) -> None:
        confirmed = self._want.get(channel)
        if confirmed is None:
            confirmed = self._want[channel] = trio.Event()
            self._ops_tx.send_nowait(channel)
        if confirmed.is_set():
            return
        with trio.move_on_after(WATCH_TIMEOUT):
            await confirmed.wait()
            return
        raise StoreUnavailable(f"Redis did not confirm the subscription to {channel!r} ({self._problem or 'slow'})")

    def unwatch(self, channel: str) -> None:
        if self._want.pop(channel, None) is not None:
            self._audit_seen.pop(channel, None)
            self._ops_tx.send_nowait(channel)

    # ------------------------------------------------------------------ connection

    def _set_problem(self, reason: str) -> None:
        if reason != self._problem:
            if reason:
                log.warning("backplane unhealthy: %s", reason)
            else:
                log.info("backplane healthy")
        self._problem = reason
        self._m_problem.clear()
        if reason:
            self._m_problem.labels(reason.split(":", 1)[0]).set(1)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keeps the pub/sub connection up (reconnecting with back-off) and runs the canary and
        the audit; started once the first connection is subscribed."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._connection_loop)
            nursery.start_soon(self._canary_loop)
            nursery.start_soon(self._audit_loop)
            task_status.started()

    async def _connection_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        backoff = BACKOFF_FIRST
        while True:
            sessions_before = self.reconnects
            reason = "closed by the server"
            try:
                await self._session(task_status)
            except* (RedisError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, _Broken) as group:
                reason = "; ".join(sorted({f"{type(e).__name__}: {e}" for e in group.exceptions}))
            self._connected = False
            self._pubsub = None
            self._subscribed.clear()
            for channel, confirmed in self._want.items():
                if confirmed.is_set():
                    self._want[channel] = trio.Event()  # new watches wait for the resubscribe
            self._set_problem(f"pub/sub connection lost: {reason}")
            if self.reconnects > sessions_before:
                backoff = BACKOFF_FIRST  # that one had connected: start the back-off over
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self, task_status: trio.TaskStatus[None]) -> None:
        client = self.link.client
        options = dict(
            ignore_subscribe_messages=True, retry_policy=NoRetryPolicy(), subscription_timeout=SUBSCRIBE_TIMEOUT,
            max_idle_seconds=max(1.0, self.interval),
        )
        pubsub = client.sharded_pubsub(**options) if self.link.cluster else client.pubsub(**options)
        async with pubsub:
            channels = list(self._want)
            await pubsub.subscribe(self._canary, *(pubsub_channel(c) for c in channels))
            self._pubsub = pubsub
            self._subscribed = set(channels)
            for channel in channels:
                if channel in self._want:
                    self._want[channel].set()
            self._connected = True
            self._canary_back.set()  # a fresh connection starts with a clean canary record
            self._set_problem("")
            first = self.reconnects == 0
            if not first:
                self._m_reconnects.inc()
            self.reconnects += 1
            # Events appended while the connection was down never arrived: catch up from the store.
            asked = sum(self.hub.catch_up(channel, "reconnect") for channel in channels)
            if asked:
                log.info("pub/sub reconnected: %d subscriptions catch up on %d channels", asked, len(channels))
            if first:
                task_status.started()
            self._broken = ""
            async with trio.open_nursery() as nursery:
                self._session_scope = nursery.cancel_scope
                nursery.start_soon(self._reconcile, pubsub)
                await self._read(pubsub)
            if self._broken:
                raise _Broken(self._broken)

    async def _read(self, pubsub: Any) -> None:
        hub = self.hub
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] not in ("message", "smessage"):
                continue
            name, data = message["channel"], message["data"]
            if name == self._canary:
                if data == self._canary_nonce:
                    self._canary_back.set()
                continue
            try:
                event = decode_blob(channel_of(name.decode()), data)
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("ignoring an unreadable message on %r: %s", name, exc)
                continue
            self.received += 1
            hub.dispatch(event)

    async def _reconcile(self, pubsub: Any) -> None:
        """Applies watch/unwatch to the connection in order (one task: no SUBSCRIBE/UNSUBSCRIBE race)."""
        async for channel in self._ops_rx:
            changed = {channel}
            while True:
                try:
                    changed.add(self._ops_rx.receive_nowait())
                except trio.WouldBlock:
                    break
            drop = [c for c in changed if c not in self._want and c in self._subscribed]
            add = [c for c in changed if c in self._want and c not in self._subscribed]
            if drop:
                self._subscribed.difference_update(drop)
                await pubsub.unsubscribe(*(pubsub_channel(c) for c in drop))
            if add:
                await pubsub.subscribe(*(pubsub_channel(c) for c in add))
                self._subscribed.update(add)
                for c in add:
                    confirmed = self._want.get(c)
                    if confirmed is not None:
                        confirmed.set()
                    else:
                        self._ops_tx.send_nowait(c)  # unwatched meanwhile: drop it next round

    # ------------------------------------------------------------------ canary

    async def _canary_loop(self) -> None:
        client = self.link.client
        publish = client.spublish if self.link.cluster else client.publish
        misses = 0
        while True:
            await trio.sleep(self.interval)
            if not self._connected:
                continue
            self._canary_nonce = secrets.token_hex(8).encode()
            self._canary_back = trio.Event()
            sent = trio.current_time()
            with trio.move_on_after(max(self.interval, 0.5)):
                try:
                    await publish(self._canary, self._canary_nonce)
                except (RedisError, OSError) as exc:
                    self._set_problem(f"Redis unreachable: {exc}")
                    misses = 0
                    continue
                await self._canary_back.wait()
                self.canary_rtt = trio.current_time() - sent
                misses = 0
                if self._connected:
                    self._set_problem("")
                continue
            misses += 1
            self._set_problem(f"canary: no round trip through Redis for {misses} rounds")
            if misses >= CANARY_MISSES:
                misses = 0
                self._break_connection("canary lost")

    def _break_connection(self, reason: str) -> None:
        """Tears the pub/sub connection down so that the connection loop rebuilds it."""
        if self._session_scope is not None and self._connected:
            log.warning("rebuilding the pub/sub connection: %s", reason)
            self._broken = reason
            self._session_scope.cancel()

    # ------------------------------------------------------------------ audit

    async def _audit_loop(self) -> None:
        while True:
            await trio.sleep(self.interval)
            if self._connected:
                await self.audit()

    async def audit(self) -> int:
        """One round: subscriptions still behind the head read one round earlier catch up.
        Returns how many were asked."""
        hub = self.hub
        channels = [channel for channel, _count in hub.channels() if channel in self._subscribed]
        positions: dict[str, ChannelPosition] = {}
        limiter = trio.CapacityLimiter(AUDIT_CONCURRENCY)

        async def read(channel: str) -> None:
            async with limiter:
                positions[channel] = await self.store.position(channel)

        failed = False
        try:
            async with trio.open_nursery() as nursery:
                for channel in channels:
                    nursery.start_soon(read, channel)
        except* StoreUnavailable:
            failed = True  # Redis is down: the store's health says so; try next round
        if failed:
            return 0
        asked = 0
        for channel in channels:
            before, now = self._audit_seen.get(channel), positions[channel]
            self._audit_seen[channel] = now
            if before is None:
                continue
            for sub in hub.subscriptions(channel):
                if sub.epoch == before.epoch:
                    stalled = sub.last_seq < before.head_seq
                else:
                    stalled = sub.epoch != now.epoch
                if not stalled:
                    continue
                seen = None
                if sub.epoch != now.epoch and now.head_seq:
                    # the catch-up must see the new epoch even when its head is below the old seq
                    try:
                        seen = await self.store.read_one(channel, now.head_seq)
                    except StoreUnavailable:
                        return asked
                if sub.begin_catch_up(seen, "audit"):
                    asked += 1
        for channel in list(self._audit_seen):
            if channel not in positions:
                del self._audit_seen[channel]
        if asked:
            log.warning("audit: %d stalled subscriptions catch up from the store", asked)
        return asked
