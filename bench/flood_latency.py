"""Latency of 50 well-behaved clients (app-level ping → pong round trip) with and without one
client flooding the server as fast as it can (it is closed with 4029 and keeps coming back).

Usage: python bench/flood_latency.py [--clients 50] [--seconds 10]"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    LightClient,
    ServerProcess,
    env_for_bench,
    frame,
    make_token,
    percentile,
)


def flooder(port: int, stop_at: float, out) -> None:
    async def run() -> None:
        sent = closes = 0
        ping = frame("ping", {})
        while time.time() < stop_at:
            try:
                c = await LightClient.connect("127.0.0.1", port)
                await c.send(frame("auth", {"token": make_token("flooder", ttl=600)}))
                while time.time() < stop_at:
                    await c.send(ping)
                    sent += 1
            except (ConnectionError, OSError, trio.BrokenResourceError):
                closes += 1
                await trio.sleep(0.05)
        out.put({"sent": sent, "reconnects": closes})

    trio.run(run)


async def measure(port: int, clients: int, seconds: float) -> list[float]:
    rtts: list[float] = []

    async def one(i: int) -> None:
        c = await LightClient.connect("127.0.0.1", port)
        await c.auth_and_subscribe(make_token(f"calm{i}", ttl=600), None)
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            t0 = time.perf_counter()
            await c.send(frame("ping", {}))
            while (await c.recv_json())["type"] != "pong":
                pass
            rtts.append((time.perf_counter() - t0) * 1000)
            await trio.sleep(0.1)
        await c.aclose()

    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(one, i)
    return rtts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", env=env_for_bench()).start()
        try:
            calm = trio.run(measure, server.port, args.clients, args.seconds)
            result["without_flood_ms"] = {"p50": percentile(calm, 50), "p99": percentile(calm, 99), "n": len(calm)}
            out: multiprocessing.Queue = multiprocessing.Queue()
            proc = multiprocessing.Process(target=flooder, args=(server.port, time.time() + args.seconds + 2, out))
            proc.start()
            time.sleep(1.0)
            stormy = trio.run(measure, server.port, args.clients, args.seconds)
            proc.join(30)
            result["with_flood_ms"] = {"p50": percentile(stormy, 50), "p99": percentile(stormy, 99), "n": len(stormy)}
            result["flooder"] = out.get(timeout=5)
            _status, stats = server.api("GET", "/api/v1/stats")
            result["server_connections_after"] = stats["nodes"][0]["connections"]
        finally:
            server.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
