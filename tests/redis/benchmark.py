"""Measures the multi-node figures quoted in docs/redis.md (never asserted in tests):
the publish rate through Redis with concurrent publishers, cross-node delivery latency, and how
long a killed pub/sub connection takes to repair. Run: ``python -m tests.redis.benchmark``."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx
import trio

from tests.redis.servers import RedisServer
from tests.redis.store_contract import request
from tests.redis.test_multinode import FAST
from tests.support import API_KEY, ServerProcess, make_token
from tests.wsserver.harness import Client
from wsserver.config import Retention
from wsserver.redis_link import RedisLink
from wsserver.store.redis import RedisStore


async def store_rate(url: str, publishers: int, channels: int, seconds: float = 3.0) -> float:
    """Appends/s of one RedisStore (one node) with ``publishers`` concurrent tasks."""
    async with RedisLink(url).open() as link:
        store = RedisStore(link, retention=lambda c: Retention(3600.0, 10_000))
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            count = 0
            deadline = trio.current_time() + seconds

            async def publisher(i: int) -> None:
                nonlocal count
                while trio.current_time() < deadline:
                    await store.append(request(f"bench-{i % channels}", idem=f"{i}-{count}"))
                    count += 1

            started = trio.current_time()
            async with trio.open_nursery() as inner:
                for i in range(publishers):
                    inner.start_soon(publisher, i)
            rate = count / (trio.current_time() - started)
            nursery.cancel_scope.cancel()
    return rate


async def http_rate(nodes: list[ServerProcess], publishers: int, seconds: float = 3.0) -> float:
    """Publishes/s through the HTTP API of every node at once (the cluster-wide rate)."""
    count = 0
    deadline = time.monotonic() + seconds

    async def publisher(i: int) -> None:
        nonlocal count
        node = nodes[i % len(nodes)]
        async with httpx.AsyncClient(base_url=node.api_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            while time.monotonic() < deadline:
                r = await http.post("/api/v1/publish", json={"channel": f"h-{i % 20}", "event": "b.e", "data": {}})
                assert r.status_code == 200, r.text
                count += 1

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(publishers):
            nursery.start_soon(publisher, i)
    return count / (time.monotonic() - started)


async def subscriber(nursery: trio.Nursery, node: ServerProcess, channel: str) -> Client:
    client = await Client.open(nursery, node.ws_url)
    await client.auth(make_token("bench"))
    await client.subscribe(channel)
    return client


async def cross_node_latency(a: ServerProcess, b: ServerProcess, samples: int = 300) -> list[float]:
    async with trio.open_nursery() as nursery:
        client = await subscriber(nursery, a, "latency")
        out = []
        async with httpx.AsyncClient(base_url=b.api_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            for _ in range(samples):
                sent = time.monotonic()
                r = await http.post("/api/v1/publish", json={"channel": "latency", "event": "b.e", "data": {}})
                assert r.status_code == 200
                frame = await client.recv(10)
                assert frame["type"] == "b.e"
                out.append(time.monotonic() - sent)
        await client.aclose()
        nursery.cancel_scope.cancel()
    return out


async def repair_times(redis: RedisServer, a: ServerProcess, b: ServerProcess, rounds: int = 10) -> list[float]:
    """CLIENT KILL TYPE pubsub, then one publish on B: seconds until A's subscriber has it."""
    async with trio.open_nursery() as nursery:
        client = await subscriber(nursery, a, "repair")
        out = []
        async with httpx.AsyncClient(base_url=b.api_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            for _ in range(rounds):
                killed = time.monotonic()
                redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
                r = await http.post("/api/v1/publish", json={"channel": "repair", "event": "b.e", "data": {}})
                assert r.status_code == 200
                while (await client.recv(10))["type"] != "b.e":
                    pass
                out.append(time.monotonic() - killed)
                await trio.sleep(0.5)
        await client.aclose()
        nursery.cancel_scope.cancel()
    return out


def p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        nodes: list[ServerProcess] = []
        try:
            for publishers, channels in ((1, 1), (64, 1), (256, 64)):
                rate = await store_rate(redis.url, publishers, channels)
                print(f"store append rate, {publishers} publishers on {channels} channels: {rate:,.0f}/s")
            env = {**FAST, "WSSERVER_REDIS_URL": redis.url}
            nodes = [ServerProcess(Path(tmp) / n, env={**env, "WSSERVER_NODE_ID": n}).start() for n in "ab"]
            rate = await http_rate(nodes, 32)
            print(f"HTTP API publish rate, 2 nodes, 32 concurrent publishers: {rate:,.0f}/s")
            lat = await cross_node_latency(*nodes)
            print(f"cross-node delivery (HTTP publish on b → WebSocket on a): p50 {p(lat, .5)*1000:.2f} ms, "
                  f"p99 {p(lat, .99)*1000:.2f} ms, max {max(lat)*1000:.2f} ms")
            rep = await repair_times(redis, *nodes)
            print(f"pub/sub kill → missed event delivered: median {statistics.median(rep)*1000:.0f} ms, "
                  f"max {max(rep)*1000:.0f} ms")
        finally:
            for node in nodes:
                node.kill()
            redis.stop()


if __name__ == "__main__":
    trio.run(main)
