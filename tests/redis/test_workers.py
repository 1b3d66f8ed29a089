"""`wsserver serve --workers N` as an operator runs it: one supervisor process, N worker processes
on one WebSocket port (SO_REUSEPORT), one internal API for the whole node, on a real Redis.
A worker killed with SIGKILL under load loses its clients' connections but none of their events
(they come back through the others with their lastSeq) and is restarted; SIGTERM drains every
worker's clients with 1001 and exits 0; stats, metrics and disconnect cover every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.support import API_KEY, PLAIN_HTTP, ServerProcess, make_token
from tests.wsserver.harness import Client

pytestmark = pytest.mark.redis

WAIT = 20.0
CLIENTS = 40
CHANNEL = "work.c"


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return sorted(int(p) for p in out)


async def api(node: ServerProcess, method: str, path: str, body: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.api_url, timeout=WAIT, verify=PLAIN_HTTP) as http:
        return await http.request(method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})


@pytest.fixture
def node(redis_server, tmp_path):
    env = {"WSSERVER_REDIS_URL": redis_server.url, "WSSERVER_HEARTBEAT_INTERVAL": "1", "WSSERVER_LOG_LEVEL": "info",
           "WSSERVER_MAX_CONNECTIONS_PER_USER": "1000"}
    server = ServerProcess(tmp_path / "data", env=env, args=["--workers", "2"])
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.kill()
        for pid in children(server.proc.pid) if server.proc else []:
            os.kill(pid, signal.SIGKILL)


class Follower:
    """A client that keeps one subscription alive across drops, resuming from the last seq it got."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.seqs: list[int] = []
        self.epoch: str | None = None
        self.connections = 0
        self.closes: list[int] = []
        self.stop = False

    async def run(self, nursery: trio.Nursery) -> None:
        while not self.stop:
            try:
                async with trio.open_nursery() as inner:
                    client = await Client.open(inner, self.url)
                    self.connections += 1
                    await client.auth(make_token(self.name))
                    last = self.seqs[-1] if self.seqs else 0
                    await client.subscribe(CHANNEL, last_seq=last, epoch=self.epoch)
                    while not self.stop:
                        frame = await client.recv(timeout=3600)
                        if frame.get("channel") == CHANNEL and "seq" in frame:
                            self.seqs.append(frame["seq"])
                            self.epoch = frame["epoch"]
                    await client.aclose()
                    inner.cancel_scope.cancel()
            except* ConnectionClosed as group:
                reason = group.exceptions[0].reason
                self.closes.append(reason.code if reason is not None else 1006)
            except* (OSError, trio.BrokenResourceError):
                self.closes.append(-1)  # refused mid-restart: try again
            await trio.sleep(0.05)


async def test_workers_share_the_port_survive_a_kill_9_and_drain_on_sigterm(node, nursery):
    supervisor = node.proc.pid
    workers = children(supervisor)
    assert len(workers) == 2
    followers = [Follower(node.ws_url, f"u{i}") for i in range(CLIENTS)]
    for f in followers:
        nursery.start_soon(f.run, nursery)
    with trio.fail_after(WAIT):
        while True:
            stats = (await api(node, "GET", "/api/v1/stats")).json()
            if len(stats["connections"]) == CLIENTS and all(c["subscriptions"] for c in stats["connections"]):
                break
            await trio.sleep(0.1)
    per_worker = {n["nodeId"]: n["connections"] for n in stats["nodes"]}
    assert len(per_worker) == 2 and sum(per_worker.values()) == CLIENTS
    assert min(per_worker.values()) >= CLIENTS // 5, per_worker  # the kernel spread them over both
    metrics = (await api(node, "GET", "/metrics")).text
    assert 'wsserver_connections{worker="0"}' in metrics and 'wsserver_connections{worker="1"}' in metrics

    published = 0

    async def publish(n: int) -> None:
        nonlocal published
        for _ in range(n):
            r = await api(node, "POST", "/api/v1/publish", {"channel": CHANNEL, "event": "a.b", "data": {"i": published}})
            assert r.status_code == 200, r.text
            published += 1
            await trio.sleep(0.005)

    await publish(100)
    os.kill(workers[0], signal.SIGKILL)  # a worker dies mid-stream
    await publish(200)
    with trio.fail_after(WAIT):  # the supervisor starts it again
        while len(children(supervisor)) < 2 or workers[0] in children(supervisor):
            await trio.sleep(0.1)
        while len((await api(node, "GET", "/api/v1/stats")).json()["nodes"]) < 2:
            await trio.sleep(0.1)
    with trio.fail_after(WAIT):  # every client has every event, once, in order
        while any(len(f.seqs) < published for f in followers):
            await trio.sleep(0.1)
    for f in followers:
        assert f.seqs == list(range(1, published + 1)), f.name
    moved = [f for f in followers if f.connections > 1]
    assert moved, "some clients were on the killed worker and came back"

    by_user = await api(node, "POST", "/api/v1/disconnect", {"userId": "u3", "code": 4003, "reason": "bye"})
    assert by_user.json() == {"disconnected": 1}  # found on whichever worker holds it

    for f in followers:
        f.stop = True
    node.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = await trio.to_thread.run_sync(node.proc.wait, 30)
    assert code == 0 and time.monotonic() - started < 20
    assert children(supervisor) == []
    drained = [f.closes[-1] for f in followers if f.closes and f.name != "u3"]
    assert drained.count(1001) >= CLIENTS - 5, drained  # the last close every client saw: going away


def test_more_than_one_worker_without_redis_is_refused_plainly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "wsserver", "serve", "--workers", "2", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "WSSERVER_REDIS_URL": ""},
    )
    assert done.returncode == 2
    assert "workers" in done.stderr and "redis_url" in done.stderr and "Traceback" not in done.stderr
