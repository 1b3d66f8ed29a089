"""Where an idle connection's memory goes: the server runs in this process under tracemalloc,
N clients (authenticated, each with ``--subscriptions`` subscriptions) are held by a child process,
and the allocations made while they connected are grouped by module and by type of object.

    python bench/idle_profile.py --connections 2000 --subscriptions 2

Prints KiB per connection by source file (and the top lines); RSS growth per connection too.
tracemalloc sees Python allocations only (not the kernel's socket buffers).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import tracemalloc
from collections import defaultdict
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import rss_kib  # noqa: E402
from tests.support import API_KEY, SECRET  # noqa: E402
from wsserver.app import Server  # noqa: E402
from wsserver.config import Config  # noqa: E402

HOLDER = r"""
import sys, trio, json
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/bench")
from common import LightClient, make_token
port, n, subs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
async def main():
    token = make_token("idle", channels=["*"], ttl=3600)
    limiter = trio.CapacityLimiter(100)
    clients = []
    async def one(i):
        async with limiter:
            c = await LightClient.connect("127.0.0.1", port)
            await c.auth_and_subscribe(token, None)
            for k in range(subs):
                await c.send(__import__("common").frame("subscribe", {"channel": f"idle.{(i + k * 7) % 100}.{k}"}))
                while (await c.recv_json())["type"] != "subscribed":
                    pass
            clients.append(c)
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    print("ready", flush=True)
    sys.stdin.readline()
trio.run(main)
"""


def group(stats, key) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for stat in stats:
        out[key(stat)] += stat.size_diff
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(
            host="127.0.0.1", port=0, api_port=0, api_key=API_KEY, jwt_secret=SECRET, data_dir=tmp,
            heartbeat_interval=600.0, max_connections_per_user=1_000_000, max_connections_per_ip=1_000_000,
            rate_limit_frames=1e6,
        )
        server = Server(config)
        async with trio.open_nursery() as nursery:
            info = await nursery.start(server.run)
            await trio.sleep(0.5)
            gc.collect()
            tracemalloc.start(args.frames)
            before_rss, before = rss_kib(__import__("os").getpid()), tracemalloc.take_snapshot()
            holder = await trio.lowlevel.open_process(
                [sys.executable, "-c", HOLDER, str(ROOT), str(info.port), str(args.connections), str(args.subscriptions)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )
            line = b""
            while not line.endswith(b"\n"):
                line += await holder.stdout.receive_some(64)
            await trio.sleep(1.0)
            gc.collect()
            after, after_rss = tracemalloc.take_snapshot(), rss_kib(__import__("os").getpid())
            n = args.connections
            stats = after.compare_to(before, "traceback")
            total = sum(s.size_diff for s in stats)
            by_file = group(stats, lambda s: _where(s.traceback))
            by_line = group(after.compare_to(before, "lineno"), lambda s: str(s.traceback[0]))
            result = {
                "connections": len(server.hub.connections) if hasattr(server.hub, "connections") else n,
                "subscriptions_each": args.subscriptions,
                "traced_kib_per_connection": round(total / n / 1024, 2),
                "rss_kib_per_connection": round((after_rss - before_rss) / n, 2),
                "by_module_kib": {k: round(v / n / 1024, 2) for k, v in list(by_file.items())[:14]},
                "top_lines_kib": {k: round(v / n / 1024, 2) for k, v in list(by_line.items())[:14]},
            }
            print(json.dumps(result, indent=2))
            await holder.stdin.send_all(b"\n")
            await holder.wait()
            server.request_shutdown()


def _where(traceback) -> str:
    """The innermost frame in wsserver/ or a library's top package, for grouping."""
    for frame in reversed(traceback):
        name = frame.filename
        if "/wsserver/" in name and "site-packages" not in name:
            return "wsserver/" + name.split("/wsserver/", 1)[1]
    name = traceback[0].filename
    if "site-packages/" in name:
        return name.split("site-packages/", 1)[1].split("/", 1)[0]
    return name.rsplit("/", 1)[-1]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--subscriptions", type=int, default=2)
    ap.add_argument("--frames", type=int, default=12)
    trio.run(main, ap.parse_args())
