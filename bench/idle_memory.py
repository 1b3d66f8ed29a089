"""Idle memory per authenticated, subscribed connection, and time from `wsserver serve` to the
first accepted connection.  Usage: python bench/idle_memory.py [--connections N]"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LightClient, ServerProcess, env_for_bench, make_token, rss_kib


async def hold(port: int, n: int, channels: int, ready: trio.Event, release: trio.Event, clients: list) -> None:
    token = make_token("idle", channels=["*"], ttl=3600)
    limiter = trio.CapacityLimiter(200)

    async def one(i: int) -> None:
        async with limiter:
            c = await LightClient.connect("127.0.0.1", port)
            await c.auth_and_subscribe(token, f"idle.{i % channels}")
            clients.append(c)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    ready.set()
    await release.wait()


def startup_time(executable: list[str], runs: int = 5) -> list[float]:
    """Exec → first successful WebSocket handshake, in ms."""
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            server = ServerProcess(Path(tmp) / "data", env=env_for_bench(), executable=executable)
            t0 = time.perf_counter()
            server.data_dir.mkdir(parents=True)
            proc = subprocess.Popen([*executable, "serve"], env=server.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                async def probe(port: int = server.port) -> None:
                    while True:
                        try:
                            c = await LightClient.connect("127.0.0.1", port)
                            await c.aclose()
                            return
                        except OSError:
                            await trio.sleep(0.005)
                trio.run(probe)
                out.append((time.perf_counter() - t0) * 1000)
            finally:
                proc.terminate()
                proc.wait(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--channels", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", env=env_for_bench(WSSERVER_HEARTBEAT_INTERVAL="600")).start()
        try:
            pid = server.proc.pid
            time.sleep(0.5)
            before = rss_kib(pid)
            result = {}

            async def run():
                ready, release, clients = trio.Event(), trio.Event(), []
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(hold, server.port, args.connections, args.channels, ready, release, clients)
                    await ready.wait()
                    await trio.sleep(1.0)
                    after = rss_kib(pid)
                    _status, stats = server.api("GET", "/api/v1/stats")
                    result.update(
                        connections=stats["nodes"][0]["connections"],
                        subscriptions=stats["nodes"][0]["subscriptions"],
                        rss_before_kib=before,
                        rss_after_kib=after,
                        kib_per_connection=round((after - before) / args.connections, 2),
                    )
                    release.set()
                    for c in clients:
                        await c.aclose()

            trio.run(run)
        finally:
            server.stop()
    result["startup_ms"] = [round(x, 1) for x in startup_time([sys.executable, "-m", "wsserver"])]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
