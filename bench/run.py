"""The one benchmark command: runs every scenario against wsserver and the peers in one run and
writes results.json, report.md and plot.png.  Usage: python bench/run.py [--quick] (see README)."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenarios as sc
from driver import ensure_peers, redis_server, start_peer, start_wsserver

ALL_PEERS = ["trio-websocket", "websockets", "node-ws", "socket.io", "python-socketio"]
SOCKETIO = ["socket.io", "python-socketio"]

FULL = {
    "runs": 3,
    "fanout_sizes": [100, 1000, 5000],
    "fanout_deliveries": {100: 50_000, 1000: 50_000, 5000: 25_000},  # per closed-loop run
    "fanout_rates": {100: [5000], 1000: [5000, 20000], 5000: [5000]},
    "open_seconds": 3.0,
    "chat_channels": 10_000,
    "chat_publishes": 10_000,
    "idle_connections": 10_000,
    "catchup_events": 10_000,
    "storm_clients": 2_000,
    "storm_behind": 500,
    "durable_publishes": 20_000,
    "durable_publishers": 128,
    "cluster_subscribers": 1000,
}
QUICK = {
    "runs": 1,
    "fanout_sizes": [100],
    "fanout_deliveries": {100: 5_000},
    "fanout_rates": {100: [1000]},
    "open_seconds": 1.0,
    "chat_channels": 200,
    "chat_publishes": 500,
    "idle_connections": 200,
    "catchup_events": 500,
    "storm_clients": 50,
    "storm_behind": 50,
    "durable_publishes": 1_000,
    "durable_publishers": 8,
    "cluster_subscribers": 50,
}


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = Path("/proc/loadavg").read_text().split()[:3]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", "wsserver"], cwd=root, capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "wsserver"], cwd=root, capture_output=True,
                           text=True, check=False).stdout.strip()
    return {"cpu": cpu, "cores": len(__import__("os").sched_getaffinity(0)), "python": platform.python_version(),
            "node": node, "kernel": platform.release(),
            "wsserver_commit": commit + (" + uncommitted changes" if dirty else ""), "loadavg_at_start": load,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


class Runner:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.cfg = QUICK if args.quick else FULL
        self.peers = ALL_PEERS if args.peers == "all" else [p for p in args.peers.split(",") if p]
        self.redis = not args.no_redis
        self.only = set(args.only.split(",")) if args.only else None
        self.workdir = workdir
        self.results: dict = {"machine": machine(), "quick": args.quick, "config": self.cfg, "scenarios": {}}

    def wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    def each(self, scenario: str, names: list[str], fn, redis: bool = False) -> None:
        """Runs ``fn(target)`` for wsserver (``redis``: on a private redis-server) and each peer."""
        out = self.results["scenarios"].setdefault(scenario, {})
        for name in names:
            started = time.monotonic()
            redis_srv = None
            try:
                if name == "wsserver":
                    if redis:
                        redis_srv = redis_server(self.workdir)
                    target = start_wsserver(self.workdir, redis_url=redis_srv.url if redis_srv else None)
                else:
                    target = start_peer(name, self.workdir)
                try:
                    out[name] = fn(target)
                finally:
                    target.stop()
            except Exception as exc:  # noqa: BLE001 - one failed cell is reported, the run goes on
                traceback.print_exc()
                out[name] = {"error": repr(exc)}
            finally:
                if redis_srv:
                    redis_srv.stop()
            print(f"  {scenario:>18} {name:<16} {time.monotonic() - started:6.1f} s", flush=True)

    def run(self) -> dict:
        c, runs = self.cfg, self.cfg["runs"]
        servers = ["wsserver", *self.peers]
        if self.wanted("fanout"):
            for size in c["fanout_sizes"]:
                events = max(5, c["fanout_deliveries"][size] // size)
                self.each(f"fanout_{size}", servers, lambda t, size=size, events=events: sc.fanout(
                    t, size, runs=runs, events=events, rates=c["fanout_rates"][size], open_seconds=c["open_seconds"]))
        if self.wanted("chat"):
            self.each("chat", ["wsserver", *[p for p in self.peers if p in SOCKETIO]], lambda t: sc.chat(
                t, c["chat_channels"], runs=runs, publishes=c["chat_publishes"]))
        if self.wanted("idle"):
            self.each("idle_memory", servers, lambda t: sc.idle_memory(t, c["idle_connections"]))
        if self.wanted("catchup"):
            self.each("catch_up", ["wsserver"], lambda t: sc.catch_up(
                t, events=c["catchup_events"], storm_clients=c["storm_clients"], behind=c["storm_behind"], runs=runs))
        if self.wanted("durable"):
            self.each("durable_embedded", ["wsserver"], lambda t: sc.durable_publish(
                t, publishes=c["durable_publishes"], publishers=c["durable_publishers"], runs=runs))
            if self.redis:
                self.each("durable_redis", ["wsserver"], lambda t: sc.durable_publish(
                    t, publishes=c["durable_publishes"], publishers=c["durable_publishers"], runs=runs), redis=True)
        if self.redis and self.wanted("cluster"):
            self.results["scenarios"]["two_nodes_redis"] = {"wsserver": self.two_nodes()}
        return self.results

    def two_nodes(self) -> dict:
        """(6) subscribers on node B, publisher on node A, both on one redis-server."""
        c = self.cfg
        started = time.monotonic()
        redis_srv = redis_server(self.workdir)
        try:
            a = start_wsserver(self.workdir, name="node-a", redis_url=redis_srv.url, WSSERVER_NODE_ID="a")
            b = start_wsserver(self.workdir, name="node-b", redis_url=redis_srv.url, WSSERVER_NODE_ID="b")
            try:
                size = c["cluster_subscribers"]
                return sc.fanout(b, size, runs=c["runs"], events=max(10, 50_000 // size),
                                 rates=[5000 if size >= 1000 else 1000], open_seconds=c["open_seconds"], publish_to=a)
            finally:
                a.stop()
                b.stop()
        except Exception as exc:  # noqa: BLE001 - reported in the results
            traceback.print_exc()
            return {"error": repr(exc)}
        finally:
            redis_srv.stop()
            print(f"  {'two_nodes_redis':>18} {'wsserver':<16} {time.monotonic() - started:6.1f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one run, small sizes (the CI smoke run)")
    ap.add_argument("--peers", default="all", help=f"comma-separated subset of {','.join(ALL_PEERS)}, or ''")
    ap.add_argument("--only", default="", help="comma-separated: fanout,chat,idle,catchup,durable,cluster")
    ap.add_argument("--no-redis", action="store_true", help="skip the Redis scenarios")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--shared", action="store_true", help="note in the report that the machine was shared")
    ap.add_argument("--report-only", action="store_true", help="rewrite report.md and plot.png from OUT/results.json")
    args = ap.parse_args()
    if args.report_only:
        import report

        out = Path(args.out)
        report.write(json.loads((out / "results.json").read_text()), out)
        return
    if any(p != "trio-websocket" for p in (ALL_PEERS if args.peers == "all" else args.peers.split(",")) if p):
        ensure_peers()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wsbench-") as tmp:
        results = Runner(args, Path(tmp)).run()
    results["machine"]["shared"] = args.shared
    results["elapsed_s"] = time.monotonic() - started
    (out / "results.json").write_text(json.dumps(results, indent=1))
    import report  # after the run: it imports matplotlib from the bench venv when present

    report.write(results, out)
    print(f"wrote {out}/report.md, results.json, plot.png in {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
