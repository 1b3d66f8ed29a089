"""Prometheus metrics of one node, in a registry of its own (several nodes can share a process
in tests). Counters are bumped per batch or per event, never per subscriber per event."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections_total = Counter("wsserver_connections_opened", "WebSocket connections accepted", registry=r)
        self.handshakes_refused = Counter(
            "wsserver_handshakes_refused", "WebSocket handshakes refused", ["reason"], registry=r
        )
        self.frames_in = Counter("wsserver_frames_in", "Frames received from clients", registry=r)
        self.frames_out = Counter("wsserver_frames_out", "Frames sent to clients", registry=r)
        self.bytes_out = Counter("wsserver_bytes_out", "Bytes written to client sockets", registry=r)
        self.auth_failures = Counter("wsserver_auth_failures", "Refused tokens by reason", ["reason"], registry=r)
        self.closes = Counter("wsserver_closes", "Closed connections by close code", ["code"], registry=r)
        self.errors = Counter("wsserver_errors", "error frames sent by code", ["code"], registry=r)
        self.publishes = Counter("wsserver_publishes", "Events appended", ["source"], registry=r)
        self.duplicate_publishes = Counter(
            "wsserver_duplicate_publishes", "Publishes answered from the idempotency record", registry=r
        )
        self.replayed = Counter("wsserver_replayed_events", "Events sent from the store (replay)", registry=r)
        self.recoveries = Counter("wsserver_recoveries", "Subscribes by recovery mode", ["mode"], registry=r)
        self.publish_latency = Histogram(
            "wsserver_publish_seconds",
            "Time to append an event durably",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )

    def gauge_fn(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        Gauge(name, doc, registry=self.registry).set_function(fn)

    def render(self) -> bytes:
        return generate_latest(self.registry)
