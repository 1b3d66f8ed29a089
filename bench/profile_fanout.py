"""Profiles wsserver under the closed-loop fan-out load with py-spy (sampling the server process
from outside), and prints where the time goes: own time and inclusive time per function.

Usage: python bench/profile_fanout.py [--subscribers 1000] [--seconds 15] [--out DIR] [--redis]
Writes DIR/fanout.speedscope.json (open in speedscope.app) and DIR/fanout.collapsed.txt.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from driver import (
    VENV,
    ensure_peers,
    redis_server,
    start_wsserver,
    token,
)
from scenarios import CHANNEL, Load, _split


def summarise(collapsed: Path, top: int = 35) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
                  for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"samples: {total}", "", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--redis", action="store_true")
    ap.add_argument("--publishers", type=int, default=1,
                    help="publisher connections; above 1 each keeps 2 publishes in flight (acks), so the "
                         "store's group commit can batch events")
    ap.add_argument("--gc-threshold", type=int, default=0,
                    help="experiment: run the server with gc.set_threshold(N, 50, 100) (default: CPython's 700)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / ".work"))
    args = ap.parse_args()
    ensure_peers()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        redis = redis_server(Path(tmp)) if args.redis else None
        # The server runs as shipped, wrapped only to apply the GC experiment and to time every
        # collection (gc.callbacks), written to gc-stats.json when it exits.
        stats_file = out / "gc-stats.json"
        code = ("import atexit, gc, json, runpy, time\n"
                f"if {args.gc_threshold}: gc.set_threshold({args.gc_threshold}, 50, 100)\n"
                "s = {'seconds': [0.0, 0.0, 0.0], 'count': [0, 0, 0]}; t = [0.0]\n"
                "def cb(phase, info):\n"
                "    if phase == 'start': t[0] = time.perf_counter()\n"
                "    else: g = info['generation']; s['seconds'][g] += time.perf_counter() - t[0]; s['count'][g] += 1\n"
                "gc.callbacks.append(cb)\n"
                f"atexit.register(lambda: open({str(stats_file)!r}, 'w').write(json.dumps(s)))\n"
                "runpy.run_module('wsserver', run_name='__main__', alter_sys=True)")
        executable = [sys.executable, "-c", code]
        target = start_wsserver(Path(tmp), redis_url=redis.url if redis else None, executable=executable)
        load = Load(2)
        try:
            load.connect(target, [{"channels": [CHANNEL]}] * args.subscribers)
            load.pub.call({"op": "pub_connect", "kind": "wsserver", "host": target.host, "port": target.port,
                           "token": token(), "publishers": args.publishers, "track": {"host": target.host, "port": target.port, "channels": [CHANNEL]}})
            events = int(12_000 * args.seconds * 1.5 / args.subscribers)
            per_proc = [len(p) for p in _split(list(range(args.subscribers)), 2)]
            name = ("fanout-redis" if args.redis else "fanout") + f"-p{args.publishers}-s{args.subscribers}-gc{args.gc_threshold}"
            spy = subprocess.Popen([str(VENV / "bin" / "py-spy"), "record", "--pid", str(target.pid), "--duration",
                                    str(int(args.seconds)), "--rate", "250", "--format", "raw", "--output",
                                    str(out / f"{name}.collapsed.txt"), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            result = load.measure(target, [[events] * n for n in per_proc],
                                  {"mode": "closed", "count": events, "channels": [CHANNEL], "window": 20}
                                  if args.publishers == 1 else
                                  {"mode": "closed", "count": events, "channels": [CHANNEL], "window": 2, "acks": True},
                                  latency=False, timeout=300)
            spy.wait(args.seconds + 60)
            print(f"deliveries/s {result['deliveries_per_s']:,.0f}  server CPU {result['server_cpu_pct']:.0f}%  "
                  f"generator CPU {result['gen_cpu_pct']:.0f}%  complete {result['complete']}")
            print(summarise(out / f"{name}.collapsed.txt"))
        finally:
            load.close()
            target.stop()
            if stats_file.exists():
                gc_stats = json.loads(stats_file.read_text())
                print(f"GC over the server's life: {sum(gc_stats['seconds']):.2f} s in collections "
                      f"(per generation {[round(x, 2) for x in gc_stats['seconds']]} s, counts {gc_stats['count']})")
            if redis:
                redis.stop()


if __name__ == "__main__":
    main()
