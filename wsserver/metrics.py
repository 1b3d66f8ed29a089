"""Prometheus metrics of one node, in a registry of its own (several nodes can share a process
in tests). The hot path bumps plain integers (``Traffic``), read by the registry at scrape time;
Prometheus counters are bumped per publish, per connection or per batch, never per delivery."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class Traffic:
    """Frame and byte counts of the node, plain integers (a Prometheus counter costs a lock)."""

    __slots__ = ("frames_in", "direct_writes", "direct_bytes", "queued_frames", "queued_bytes", "queued_writes",
                 "replayed")

    def __init__(self) -> None:
        self.frames_in = 0
        self.direct_writes = 0  # frames written whole where they were produced (the connection idle)
        self.direct_bytes = 0
        self.queued_frames = 0  # frames written by a connection's writer task...
        self.queued_bytes = 0
        self.queued_writes = 0  # ...in this many vectored writes
        self.replayed = 0  # events sent from the store (catch-up)

    @property
    def frames_out(self) -> int:
        return self.direct_writes + self.queued_frames

    @property
    def bytes_out(self) -> int:
        return self.direct_bytes + self.queued_bytes


class _TrafficCollector(Collector):
    def __init__(self, traffic: Traffic) -> None:
        self._traffic = traffic

    def collect(self) -> Iterator[CounterMetricFamily]:
        t = self._traffic
        for name, doc, value in (
            ("wsserver_frames_in", "Frames received from clients", t.frames_in),
            ("wsserver_frames_out", "Frames sent to clients", t.frames_out),
            ("wsserver_bytes_out", "Bytes written to client sockets", t.bytes_out),
            ("wsserver_direct_writes", "Frames the fan-out wrote straight to an idle socket", t.direct_writes),
            ("wsserver_queued_writes", "Socket writes made by connection writer tasks", t.queued_writes),
            ("wsserver_replayed_events", "Events sent from the store (catch-up)", t.replayed),
        ):
            yield CounterMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.traffic = Traffic()
        r.register(_TrafficCollector(self.traffic))
        self.connections_total = Counter("wsserver_connections_opened", "WebSocket connections accepted", registry=r)
        self.handshakes_refused = Counter(
            "wsserver_handshakes_refused", "WebSocket handshakes refused", ["reason"], registry=r
        )
        self.auth_failures = Counter("wsserver_auth_failures", "Refused tokens by reason", ["reason"], registry=r)
        self.closes = Counter("wsserver_closes", "Closed connections by close code", ["code"], registry=r)
        self.errors = Counter("wsserver_errors", "error frames sent by code", ["code"], registry=r)
        self.publishes = Counter("wsserver_publishes", "Events appended", ["source"], registry=r)
        self.duplicate_publishes = Counter(
            "wsserver_duplicate_publishes", "Publishes answered from the idempotency record", registry=r
        )
        self.recoveries = Counter("wsserver_recoveries", "Subscribes by recovery mode", ["mode"], registry=r)
        self.catch_ups = Counter(
            "wsserver_catch_ups",
            "Catch-ups from the store: subscribe (a subscribe with lastSeq), gap (seen on the live path), "
            "reconnect (a pub/sub reconnect), audit (a stalled subscription), replan (the position was lost)",
            ["cause"],
            registry=r,
        )
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
