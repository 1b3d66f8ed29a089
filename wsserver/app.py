"""Composition root and lifecycle of one node: store → node → internal HTTP API → WebSocket
listener; on shutdown: stop accepting, close every session with 1001, drain (bounded), close
the store. The only module that imports everything. ``config.redis_url`` picks the multi-node
parts (Redis log, Redis pub/sub backplane, cluster presence) over the embedded ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from functools import partial
from pathlib import Path

import trio
from attrs import frozen

from wsserver.auth import TokenVerifier
from wsserver.backplane.base import Backplane, LocalBackplane
from wsserver.backplane.presence import ClusterPresence
from wsserver.backplane.redis import RedisBackplane
from wsserver.codes import CloseCode
from wsserver.config import Config
from wsserver.http_api import serve_api
from wsserver.hub import Hub
from wsserver.limits import Admission, AdmissionLimits
from wsserver.metrics import Metrics
from wsserver.node import Node
from wsserver.redis_link import RedisLink
from wsserver.connection import Connection
from wsserver.store.base import EventStore
from wsserver.store.redis import RedisStore
from wsserver.store.sqlite import SqliteStore
from wsserver.transport import WsConnection, make_server_ssl_context, serve_websockets

log = logging.getLogger("wsserver.app")

#: Longest interval (seconds) of the Redis canary, audit and stats exchange; shorter when the
#: heartbeat interval is shorter (tests run them fast through WSSERVER_HEARTBEAT_INTERVAL).
CLUSTER_INTERVAL = 5.0


@frozen
class ServerInfo:
    """Where a started server listens."""

    host: str
    port: int
    api_host: str
    api_port: int
    tls: bool
    workers: int = 1

    @property
    def ws_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}/ws"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


class Server:
    """One node. ``run`` supports ``nursery.start`` (→ ServerInfo) and returns after a drain.

    Args:
        config: a complete configuration (credentials resolved).
        wall_clock: seconds since the Unix epoch; tests tie it to Trio's MockClock.
        trim_interval: seconds between retention sweeps of the embedded log.
        reuse_port: a worker of ``--workers N``: its own listening socket on the shared port.
    """

    def __init__(
        self, config: Config, *, wall_clock: Callable[[], float] = time.time, trim_interval: float = 5.0,
        reuse_port: bool = False,
    ) -> None:
        if config.api_key is None or not config.has_jwt_key:
            raise ValueError("Server needs api_key and a JWT key; see wsserver.credentials.resolve_credentials")
        self.config = config
        self.wall_clock = wall_clock
        self.reuse_port = reuse_port
        self.hub = Hub()
        self.metrics = Metrics()
        self.link: RedisLink | None = None
        self.store: EventStore
        self.backplane: Backplane
        interval = min(config.heartbeat_interval, CLUSTER_INTERVAL)
        if config.redis_url:
            self.link = RedisLink(config.redis_url)
            self.store = RedisStore(self.link, retention=config.retention_for, wall_clock=wall_clock)
            self.backplane = RedisBackplane(
                self.link, self.hub, self.store, interval=interval, registry=self.metrics.registry
            )
        else:
            self.store = SqliteStore(
                Path(config.data_dir) / "events.sqlite3",
                retention=config.retention_for,
                on_commit=self.hub.dispatch_many,
                wall_clock=wall_clock,
                trim_interval=trim_interval,
                id_ttl=config.longest_history_ttl,
            )
            self.backplane = LocalBackplane()
        self.node = Node(
            config=config,
            store=self.store,
            backplane=self.backplane,
            hub=self.hub,
            metrics=self.metrics,
            verifier=TokenVerifier(config, wall_clock),
            wall_clock=wall_clock,
        )
        # Read from the hub when scraped (never drifts from the truth): open WebSocket connections.
        self.metrics.gauge_fn("wsserver_connections", "Open WebSocket connections", lambda: len(self.hub.connections))
        self.metrics.gauge_fn("wsserver_store_appended", "Events appended by this node's store",
                              lambda: self.store.statistics().appended)
        self.metrics.gauge_fn("wsserver_store_commits", "Commits (group commits: many appends each) by this node's store",
                              lambda: self.store.statistics().batches)
        self.presence = None
        if self.link is not None:
            node = self.node
            self.presence = ClusterPresence(
                self.link, node_id=node.node_id, statistics=node.statistics, now_ms=node.now_ms, interval=interval,
                on_peers=lambda peers: setattr(node, "peers", peers),
            )
        self._shutdown = trio.Event()

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown.is_set()

    def request_shutdown(self) -> None:
        """Starts the graceful shutdown (idempotent, synchronous: safe from a signal task)."""
        self._shutdown.set()

    def _open_redis(self) -> AbstractAsyncContextManager[object]:
        return self.link.open() if self.link is not None else nullcontext()

    async def run(self, *, task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._open_redis():
            await self._run(task_status)

    async def _run(self, task_status: trio.TaskStatus[ServerInfo]) -> None:
        config, node = self.config, self.node
        ssl_context = make_server_ssl_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
        async with trio.open_nursery() as root:
            await root.start(self.store.run)
            await root.start(self.node.timers.run)
            if self.node.verifier.keyset is not None and self.node.verifier.keyset.is_url:
                await root.start(self.node.verifier.keyset.run)
            await root.start(self.backplane.run)
            if self.presence is not None:
                await root.start(self.presence.run)
            api_port = await root.start(
                partial(serve_api, node, config.api_key or "", host=config.api_host, port=config.api_port)
            )
            admission = Admission(
                AdmissionLimits(
                    max_connections=config.max_connections,
                    max_connections_per_ip=config.max_connections_per_ip,
                    max_connections_per_user=config.max_connections_per_user,
                    connection_rate=config.connection_rate,
                    max_handshakes=config.max_handshakes,
                )
            )
            self.admission = admission
            self.metrics.gauge_fn(
                "wsserver_handshakes_in_progress", "TCP connections accepted whose WebSocket upgrade is not done",
                lambda: admission.handshaking,
            )
            async with trio.open_nursery() as connections:
                listener = trio.CancelScope()

                async def listen(task_status: trio.TaskStatus[list[int]]) -> None:
                    with listener:
                        await serve_websockets(
                            self._handle,
                            host=config.host,
                            port=config.port,
                            ssl_context=ssl_context,
                            max_message_size=config.max_message_size,
                            allowed_origins=config.allowed_origins,
                            allow_query_token=config.allow_query_token,
                            handler_nursery=connections,
                            tcp_user_timeout_ms=int((config.heartbeat_interval + config.heartbeat_timeout) * 1000),
                            on_refused=lambda reason: self.metrics.handshakes_refused.labels(reason).inc(),
                            admission=admission,
                            reuse_port=self.reuse_port,
                            task_status=task_status,
                        )

                ports = await connections.start(listen)
                info = ServerInfo(config.host, ports[0], config.api_host, api_port, ssl_context is not None)
                log.info("serving ws=%s api=%s node=%s", info.ws_url, info.api_url, node.node_id)
                task_status.started(info)
                await self._shutdown.wait()
                await self._drain(listener)
                connections.cancel_scope.cancel()
            root.cancel_scope.cancel()
        log.info("stopped node=%s", node.node_id)

    async def _drain(self, listener: trio.CancelScope) -> None:
        listener.cancel()
        self.node.draining = True
        count = len(self.hub.connections)
        log.info("draining: closing %d connections with 1001", count)
        for connection in list(self.hub.connections.values()):
            connection.close_soon(CloseCode.GOING_AWAY, "server going away")
        with trio.move_on_after(self.config.drain_timeout) as scope:
            await self.hub.wait_empty()
        if scope.cancelled_caught:
            log.warning("drain timeout: %d connections still open, cutting them", len(self.hub.connections))

    async def _handle(self, transport: WsConnection, query_token: str | None) -> None:
        if self.node.draining:
            await transport.close(CloseCode.GOING_AWAY, "server going away")
            return
        await Connection(self.node, transport, query_token).run()
