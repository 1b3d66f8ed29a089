"""`wsserver serve --workers N`: one node on every core of the machine. The supervisor (this
process) starts N worker processes — each a complete node on the shared Redis log and backplane,
with its own ``SO_REUSEPORT`` listening socket on the one WebSocket port, so the kernel spreads new
connections over them — restarts a worker that dies (its clients reconnect to the others with
their lastSeq and lose nothing), and on SIGTERM drains every worker (each closes its clients with
1001) and exits 0.

The node keeps one internal HTTP API port, served here: publishes, snapshots and reads go to the
Redis log directly (a control node with no connections of its own), and what concerns connections
— stats, disconnect, metrics, health, subscriber counts — is gathered from every worker's private
API (127.0.0.1, a port each worker reports when it is ready) and merged. The admin console and
Prometheus see one node with all its workers' connections.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from functools import partial
from typing import Any, Final

import attrs
import httpx
import orjson
import trio
from prometheus_client.parser import text_string_to_metric_families

from wsserver.api_types import Health
from wsserver.auth import TokenVerifier
from wsserver.backplane.base import LocalBackplane
from wsserver.backplane.presence import ClusterPresence
from wsserver.config import Config
from wsserver.http_api import serve_api
from wsserver.hub import Hub
from wsserver.metrics import Metrics
from wsserver.node import Node
from wsserver.protocol import converter
from wsserver.redis_link import RedisLink
from wsserver.stats import Stats, merge
from wsserver.store.redis import RedisStore

log = logging.getLogger("wsserver.supervisor")

#: Seconds a worker gets to report that it is ready.
READY_TIMEOUT: Final = 60.0
#: Restart back-off after a worker died: first delay and cap (seconds); a worker that stayed up
#: STABLE_AFTER seconds starts the back-off over.
RESTART_FIRST: Final = 0.5
RESTART_MAX: Final = 30.0
STABLE_AFTER: Final = 60.0
#: Seconds for one call to a worker's private API.
WORKER_CALL_TIMEOUT: Final = 5.0


@attrs.define
class Worker:
    index: int
    node_id: str
    pid: int | None = None
    api_port: int | None = None
    ready: bool = False
    started_at: float = 0.0
    restarts: int = 0
    process: Any = None


def worker_command() -> list[str]:
    """How to start this program again as a worker (the PyInstaller binary is its own interpreter)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "serve"]
    return [sys.executable, "-m", "wsserver", "serve"]


def _without_workers(argv: list[str]) -> list[str]:
    """``argv`` without its `--workers N` / `--workers=N` (a worker runs one worker: itself)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def reserve_port(host: str) -> socket.socket:
    """Binds (without listening) a socket with SO_REUSEPORT on a free port, so that every worker
    can bind the same port while nothing else takes it (for `port = 0`)."""
    family = socket.AF_INET6 if ":" in (host or "") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
    return sock


class WorkersView:
    """``http_api.NodeView`` of a node run as workers: each worker's own figures, merged."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    async def _each(self, method: str, path: str, **kw: Any) -> list[tuple[Worker, httpx.Response]]:
        """Calls every ready worker's private API at once; the workers that answered, with their answer."""
        out: list[tuple[Worker, httpx.Response]] = []

        async def call(worker: Worker) -> None:
            try:
                with trio.fail_after(WORKER_CALL_TIMEOUT):
                    out.append((worker, await self.supervisor.http.request(
                        method, f"http://127.0.0.1:{worker.api_port}{path}", **kw)))
            except (httpx.HTTPError, trio.TooSlowError) as exc:
                log.warning("worker %d did not answer %s %s: %s", worker.index, method, path, exc)

        async with trio.open_nursery() as nursery:
            for worker in self.supervisor.ready_workers():
                nursery.start_soon(call, worker)
        return sorted(out, key=lambda pair: pair[0].index)

    async def statistics(self) -> Stats:
        answers = await self._each("GET", "/api/v1/stats?scope=local")
        own = [converter.structure(orjson.loads(r.content), Stats) for _w, r in answers if r.status_code == 200]
        combined = merge(own[0], own[1:]) if own else Stats(generated_at=int(time.time() * 1000), nodes=[],
                                                            connections=[], channels=[])
        prefix = self.supervisor.node_prefix  # the workers' own entries in Redis are older copies of the above
        others = [p for p in self.supervisor.control.peers if not any(n.node_id.startswith(prefix) for n in p.nodes)]
        return merge(combined, others)

    async def disconnect(self, *, user_id: str | None, connection_id: str | None, code: int, reason: str) -> int:
        body = {"code": code, "reason": reason}
        if user_id is not None:
            body["userId"] = user_id
        if connection_id is not None:
            body["connectionId"] = connection_id
        answers = await self._each("POST", "/api/v1/disconnect", json=body)
        return sum(r.json().get("disconnected", 0) for _w, r in answers if r.status_code == 200)

    async def subscribers(self, channel: str) -> int:
        answers = await self._each("GET", f"/api/v1/channels/{channel}")
        return sum(r.json().get("subscribers", 0) for _w, r in answers if r.status_code == 200)

    async def metrics(self) -> bytes:
        """Every worker's metrics with a `worker` label, and the supervisor's own (API publishes)."""
        answers = await self._each("GET", "/metrics")
        families: dict[str, tuple[str, str, list[str]]] = {}
        texts = [(str(w.index), r.text) for w, r in answers if r.status_code == 200]
        texts.append(("supervisor", self.supervisor.control.metrics.render().decode()))
        for worker, text in texts:
            for family in text_string_to_metric_families(text):
                name, kind, doc = family.name, family.type, family.documentation
                lines = families.setdefault(name, (kind, doc, []))[2]
                for sample in family.samples:
                    labels = {**sample.labels, "worker": worker}
                    rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                    lines.append(f"{sample.name}{{{rendered}}} {_number(sample.value)}")
        out = []
        for name, (kind, doc, lines) in families.items():
            out += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}", *lines]
        return ("\n".join(out) + "\n").encode()

    async def health(self) -> Health:
        supervisor = self.supervisor
        node_id = supervisor.control.node_id
        if supervisor.draining:
            return Health("draining", node_id, "draining: the node is shutting down")
        answers = await self._each("GET", "/healthz")
        serving = sum(1 for _w, r in answers if r.status_code == 200)
        total = len(supervisor.workers)
        problem = supervisor.control.health_problem()
        if problem:
            return Health("unhealthy", node_id, problem)
        if serving == 0:
            return Health("unhealthy", node_id, f"no worker is serving (0 of {total})")
        return Health("ok", node_id, None if serving == total else f"{serving} of {total} workers serving")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value == value else "NaN"


class Supervisor:
    """Runs the workers and the node's API; ``run`` returns once everything drained."""

    def __init__(self, config: Config, *, argv: list[str], env: dict[str, str] | None = None) -> None:
        assert config.redis_url, "workers need redis_url (the configuration refuses it otherwise)"
        self.config = config
        self.count = config.worker_count
        self.argv = _without_workers(argv)  # the serve command's own flags, for the workers
        self.env = dict(os.environ if env is None else env)
        base = config.node_id or f"{socket.gethostname()}:{config.port}"
        self.node_prefix = base + "#w"
        self.workers = [Worker(i, f"{self.node_prefix}{i}") for i in range(self.count)]
        self.link = RedisLink(config.redis_url)
        hub = Hub()
        metrics = Metrics()
        store = RedisStore(self.link, retention=config.retention_for)
        self.control = Node(config=attrs.evolve(config, node_id=base), store=store, backplane=LocalBackplane(), hub=hub,
                            metrics=metrics, verifier=TokenVerifier(config))
        self.http = httpx.AsyncClient(timeout=WORKER_CALL_TIMEOUT, headers={"Authorization": f"Bearer {config.api_key}"})
        self.draining = False
        self.port = config.port
        self._reservation: socket.socket | None = None
        self._stop = trio.Event()

    def ready_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.ready and w.api_port]

    @property
    def shutdown_requested(self) -> bool:
        return self._stop.is_set()

    def request_shutdown(self) -> None:
        """Starts the drain of every worker (idempotent, synchronous: safe from a signal task)."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[dict] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        if not self.port:
            self._reservation = reserve_port(config.host)
            self.port = self._reservation.getsockname()[1]
        try:
            async with self.link.open(), self.http:
                async with trio.open_nursery() as root:
                    await root.start(self.control.store.run)
                    presence = ClusterPresence(
                        self.link, node_id=self.control.node_id, statistics=lambda: Stats(0, [], [], []),
                        now_ms=self.control.now_ms, interval=min(config.heartbeat_interval, 5.0),
                        on_peers=lambda peers: setattr(self.control, "peers", peers), publish=False,
                    )
                    await root.start(presence.run)
                    async with trio.open_nursery() as workers:
                        started = trio.Semaphore(0)
                        for worker in self.workers:  # all at once: a 32-core machine starts 32 workers
                            workers.start_soon(self._keep_running, worker, started)
                        for _ in self.workers:
                            await started.acquire()
                        # The API (and so /healthz) opens once every worker serves.
                        api_port = await root.start(partial(
                            serve_api, self.control, config.api_key or "", host=config.api_host,
                            port=config.api_port, view=WorkersView(self),
                        ))
                        log.info("node %s: %d workers on ws port %d, api port %d", self.control.node_id, self.count,
                                 self.port, api_port)
                        task_status.started({"port": self.port, "api_port": api_port, "workers": self.count})
                        await self._stop.wait()
                        await self._drain()
                        workers.cancel_scope.cancel()
                    root.cancel_scope.cancel()
        finally:
            if self._reservation is not None:
                self._reservation.close()

    async def _drain(self) -> None:
        """SIGTERM to every worker (each drains its clients with 1001), then waits for all."""
        self.draining = True
        alive = [w for w in self.workers if w.process is not None and w.process.returncode is None]
        log.info("draining: SIGTERM to %d workers", len(alive))
        for worker in alive:
            worker.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.config.drain_timeout + 10) as scope:
            for worker in alive:
                await worker.process.wait()
        if scope.cancelled_caught:
            for worker in alive:
                if worker.process.returncode is None:
                    log.warning("worker %d did not drain in time: killing it", worker.index)
                    worker.process.kill()

    def _worker_command(self, worker: Worker, fd: int) -> list[str]:
        """The supervisor's own `serve` flags (so the same configuration, files and all), then the
        worker's: flags given last win over the configuration file, the environment and earlier ones."""
        return [
            *worker_command(), *self.argv, "--workers", "1", "--port", str(self.port), "--api-host", "127.0.0.1",
            "--api-port", "0", "--node-id", worker.node_id, "--worker-fd", str(fd),
        ]

    def _worker_env(self) -> dict[str, str]:
        """The supervisor's environment with the credentials it resolved (development ones too)."""
        env = dict(self.env)
        env["WSSERVER_API_KEY"] = self.config.api_key or ""
        if self.config.jwt_secret:
            env["WSSERVER_JWT_SECRET"] = self.config.jwt_secret
        return env

    async def _keep_running(self, worker: Worker, started_once: trio.Semaphore) -> None:
        """Starts ``worker`` and starts it again whenever it dies (with back-off), until the drain;
        releases ``started_once`` when it first reported ready (or first died)."""
        delay = RESTART_FIRST
        started = False
        while True:
            read_fd, write_fd = os.pipe()
            try:
                worker.process = await trio.lowlevel.open_process(
                    self._worker_command(worker, write_fd), env=self._worker_env(), pass_fds=(write_fd,),
                )
            finally:
                os.close(write_fd)
            worker.pid, worker.started_at, worker.ready = worker.process.pid, trio.current_time(), False
            try:
                report = await self._read_ready(read_fd, worker)
            finally:
                os.close(read_fd)
            if report is not None:
                worker.api_port, worker.ready = report["api_port"], True
                log.info("worker %d ready (pid %d, private api port %d)", worker.index, worker.pid, worker.api_port)
            if not started:
                started = True
                started_once.release()
            code = await worker.process.wait()
            worker.ready = False
            if self.draining:
                log.info("worker %d exited %s after the drain", worker.index, code)
                return
            worker.restarts += 1
            if trio.current_time() - worker.started_at > STABLE_AFTER:
                delay = RESTART_FIRST
            log.error("worker %d (pid %d) died with %s: restarting in %.1f s", worker.index, worker.pid, code, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX)

    async def _read_ready(self, fd: int, worker: Worker) -> dict | None:
        """The worker's one-line JSON report (pid, ports) once it serves; None if it died first."""
        data = b""
        with trio.move_on_after(READY_TIMEOUT):
            while b"\n" not in data:
                try:
                    await trio.lowlevel.wait_readable(fd)
                except trio.ClosedResourceError:
                    return None
                chunk = os.read(fd, 4096)
                if not chunk:
                    return None
                data += chunk
            return orjson.loads(data.split(b"\n", 1)[0])
        log.error("worker %d did not report ready within %.0f s", worker.index, READY_TIMEOUT)
        return None
