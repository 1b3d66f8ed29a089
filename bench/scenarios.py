"""The benchmark scenarios, one function each, parameterised by size; each drives a started
server through load-generator processes and returns plain numbers (lists over runs) for the report."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import percentile
from driver import (
    API_KEY,
    LoadProcess,
    Target,
    cpu_of,
    rss_of,
    start_peer,
    start_wsserver,
    token,
)

CHANNEL = "fan"


def _split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


class Load:
    """Subscriber processes plus one publisher process, closed together."""

    def __init__(self, procs: int) -> None:
        self.subs = [LoadProcess() for _ in range(procs)]
        self.pub = LoadProcess()

    def connect(self, target: Target, specs: list[dict], **extra) -> dict:
        for proc, part in zip(self.subs, _split(specs, len(self.subs))):
            proc.send({"op": "connect", "kind": target.kind, "host": target.host, "port": target.port, "token": token(),
                       "specs": part, **extra})
        answers = [proc.read() for proc in self.subs]
        return {
            "connected": sum(a["connected"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "failures": [f for a in answers for f in a["failures"]][:3],
            "seconds": max(a["seconds"] for a in answers),
            "done_at": sorted(t for a in answers for t in a["done_at"]),
            "cpu": sum(a["cpu"] for a in answers),
        }

    def measure(self, target: Target, counts: list[list[int]] | int, publish: dict, *, latency: bool,
                timeout: float) -> dict:
        """Arms the subscribers, publishes, and collects: deliveries, duration, latencies, CPU."""
        server_cpu0 = cpu_of(target.pid)
        for i, proc in enumerate(self.subs):
            proc.send({"op": "arm", "counts": counts if isinstance(counts, int) else counts[i], "latency": latency,
                       "timeout": timeout})
        for proc in self.subs:
            assert proc.read()["armed"]
        pub = self.pub.call({"op": "publish", **publish}, timeout=timeout + 60)
        results = [proc.read(timeout + 60) for proc in self.subs]
        lasts = [r["last"] for r in results if r["last"] is not None]
        end = max(lasts) if lasts else time.monotonic()
        duration = max(1e-9, end - pub["t_first"])
        received = sum(r["received"] for r in results)
        expected = sum(r["expected"] for r in results)
        lat = [x / 1000 for r in results for x in r["lat_us"]]
        gen_cpu = sum(r["cpu"] for r in results) + pub["cpu"]
        server_cpu = cpu_of(target.pid) - server_cpu0
        return {
            "received": received,
            "expected": expected,
            "errors": pub["broken"],
            "complete": received == expected and not any(r["timeout"] for r in results) and not pub["broken"],
            "seconds": duration,
            "deliveries_per_s": received / duration,
            "publishes_per_s": pub["sent"] / max(1e-9, pub["wall"]) if publish["mode"] == "closed" else publish["rate"],
            "lat_ms": {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "p999": percentile(lat, 99.9),
                       "max": max(lat) if lat else float("nan"), "n": len(lat)},
            "server_cpu_pct": 100 * server_cpu / duration,
            "gen_cpu_pct": 100 * gen_cpu / duration,
            "gen_max_proc_cpu_pct": 100 * max([r["cpu"] for r in results] + [pub["cpu"]]) / duration,
        }

    def close(self) -> None:
        for proc in [*self.subs, self.pub]:
            proc.close()


def fanout(target: Target, subscribers: int, *, runs: int, events: int, rates: list[int], open_seconds: float,
           procs: int = 2, publish_to: Target | None = None, publishers: int = 8) -> dict:
    """(1) one channel, ``subscribers`` subscribers, three shapes of publishing:

    * ``one_at_a_time`` — the common case, a backend publishing to a busy channel: one event in
      flight. wsserver: POSTs over the HTTP API, each sent once the previous one was answered
      (durable, fsync included, and handed to the fan-out); the broadcast peers: the next message
      once the last subscriber got the previous one.
    * ``closed`` — at most max(20, 10,000 / subscribers) events in flight ahead of the last
      subscriber (one publisher connection), so each socket write carries several events.
    * ``closed_multi`` (wsserver) — ``publishers`` connections with 2 acknowledged publishes in
      flight each: concurrent publishers share group commits.

    Then open loop at each delivery rate in ``rates`` for ``open_seconds`` (wsserver publishing
    over HTTP, one request at a time): publish→receive latency. ``publish_to`` is another node
    (two nodes on Redis: publish on one, subscribers on the other)."""
    load = Load(procs)
    try:
        channels = [CHANNEL] if target.kind != "plain" else []
        setup = load.connect(target, [{"channels": channels if target.kind == "wsserver" else []}] * subscribers)
        if setup["connected"] != subscribers:
            return {"error": f"connected {setup['connected']}/{subscribers}: {setup['failures']}"}
        source = publish_to or target
        track = None
        api = None
        if target.kind == "wsserver":
            track = {"host": target.host, "port": target.port, "channels": [CHANNEL]}
            server = source.extra["server"]
            api = {"host": source.host, "port": server.api_port, "key": API_KEY}
        load.pub.call({"op": "pub_connect", "kind": source.kind, "host": source.host, "port": source.port,
                       "token": token(), "track": track, "api": api,
                       "publishers": publishers if source.kind == "wsserver" else 1})
        out: dict = {"setup_s": setup["seconds"], "one_at_a_time": [], "closed": [],
                     "open": {str(r): [] for r in rates}}
        if source.kind == "wsserver":
            out["closed_multi"] = []
        per_proc = [len(part) for part in _split(list(range(subscribers)), procs)]
        window = max(20, 10_000 // subscribers)  # events in flight: enough to keep the server busy
        timeout = max(30.0, events * subscribers / 2000)
        single = max(5, events // 2)
        for _ in range(runs):
            if out.get("errors"):
                break  # a lost publisher connection: what was measured before it stands
            counts = [[single] * n for n in per_proc]
            one = {"mode": "closed", "count": single, "channels": [CHANNEL]}
            one.update({"via": "http"} if api else {"window": 1, "publishers": 1})
            out["one_at_a_time"].append(load.measure(target, counts, one, latency=False, timeout=timeout))
            counts = [[events] * n for n in per_proc]
            out["closed"].append(load.measure(
                target, counts, {"mode": "closed", "count": events, "channels": [CHANNEL], "window": window,
                                 "publishers": 1},
                latency=False, timeout=timeout))
            if "closed_multi" in out:
                out["closed_multi"].append(load.measure(
                    target, counts, {"mode": "closed", "count": events, "channels": [CHANNEL], "window": 2,
                                     "acks": True}, latency=False, timeout=timeout))
            for rate in rates:
                pubs_per_s = rate / subscribers
                count = max(5, int(pubs_per_s * open_seconds))
                counts = [[count] * n for n in per_proc]
                spec = {"mode": "open", "count": count, "channels": [CHANNEL], "rate": pubs_per_s, "publishers": 1}
                if api:
                    spec["via"] = "http"
                out["open"][str(rate)].append(load.measure(target, counts, spec, latency=True,
                                                           timeout=open_seconds * 4 + 30))
            lost = [e for kind in ("one_at_a_time", "closed", "closed_multi") for r in out.get(kind, []) for e in r["errors"]]
            lost += [e for runs_ in out["open"].values() for r in runs_ for e in r["errors"]]
            if lost:
                out["errors"] = lost[:5]
        return out
    finally:
        load.close()


def chat(target: Target, channels: int, *, runs: int, publishes: int, procs: int = 2, seed: int = 7) -> dict:
    """(2) ``channels`` channels × 1–3 subscribers each; connections of ~4 subscriptions; closed
    loop of ``publishes`` acknowledged publishes spread at random over the channels (8 publisher
    connections, 16 in flight each)."""
    rng = random.Random(seed)
    subscriptions = [(f"room.{c}", k) for c in range(channels) for k in range(rng.randint(1, 3))]
    rng.shuffle(subscriptions)
    n_conns = max(1, len(subscriptions) // 4)
    per_conn: list[list[str]] = [[] for _ in range(n_conns)]
    for i, (channel, _) in enumerate(subscriptions):
        per_conn[i % n_conns].append(channel)
    per_conn = [sorted(set(chs)) for chs in per_conn]
    load = Load(procs)
    try:
        setup = load.connect(target, [{"channels": chs} for chs in per_conn], concurrency=50)
        if setup["connected"] != n_conns:
            return {"error": f"connected {setup['connected']}/{n_conns}: {setup['failures']}"}
        load.pub.call({"op": "pub_connect", "kind": target.kind, "host": target.host, "port": target.port,
                       "token": token(), "publishers": 8})
        out: dict = {"connections": n_conns, "subscriptions": sum(map(len, per_conn)), "setup_s": setup["seconds"],
                     "closed": []}
        for run in range(runs):
            sequence = [f"room.{rng.randrange(channels)}" for _ in range(publishes)]
            hits: dict[str, int] = {}
            for ch in sequence:
                hits[ch] = hits.get(ch, 0) + 1
            expected = [sum(hits.get(ch, 0) for ch in chs) for chs in per_conn]
            counts = _split(expected, procs)
            out["closed"].append(load.measure(
                target, counts, {"mode": "closed", "count": publishes, "channels": sequence, "window": 16, "acks": True},
                latency=False, timeout=max(60.0, publishes / 200)))
        return out
    finally:
        load.close()


def idle_memory(target: Target, connections: int, *, procs: int = 2) -> dict:
    """(3) RSS growth per authenticated, subscribed connection (100 channels), held idle."""
    time.sleep(0.5)
    before = rss_of(target.pid)
    load = Load(procs)
    try:
        channels = lambda i: [f"idle.{i % 100}"] if target.kind == "wsserver" else []
        setup = load.connect(target, [{"channels": channels(i)} for i in range(connections)], concurrency=100)
        time.sleep(2.0)
        after = rss_of(target.pid)
        return {"connected": setup["connected"], "failed": setup["failed"], "rss_before_kib": before,
                "rss_after_kib": after, "kib_per_connection": (after - before) / max(1, setup["connected"])}
    finally:
        load.close()


def _fill(target: Target, channel_events: dict[str, int]) -> None:
    """Publishes the given number of events into each channel through the HTTP API (16 threads):
    the set-up of the catch-up scenario, kept off the WebSocket publish path it does not measure."""
    server = target.extra["server"]

    def fill_channel(channel: str) -> None:
        for _ in range(channel_events[channel]):
            server.publish(channel, "b.m", {"t": 0})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(fill_channel, channel_events))


def catch_up(target: Target, *, events: int, storm_clients: int, behind: int, runs: int, procs: int = 2) -> dict:
    """(4) one client replaying ``events`` events from lastSeq 0; then ``storm_clients`` clients at
    once (over 20 channels), each ``behind`` events behind, until all have caught up."""
    storm_channels = [f"storm.{i}" for i in range(20)]
    _fill(target, {"replay": events, **{ch: behind for ch in storm_channels}})
    out: dict = {"replay_s": [], "storm_s": [], "storm_p50_s": []}
    for _ in range(runs):
        load = Load(1)
        try:
            r = load.connect(target, [{"channels": ["replay"], "last_seq": 0}], expect=events, timeout=120)
            out["replay_s"].append(r["done_at"][-1] if r["done_at"] else float("nan"))
        finally:
            load.close()
        load = Load(procs)
        try:
            specs = [{"channels": [storm_channels[i % 20]], "last_seq": 0} for i in range(storm_clients)]
            r = load.connect(target, specs, expect=behind, timeout=120, concurrency=storm_clients)
            ok = len(r["done_at"]) == storm_clients
            out["storm_s"].append(r["done_at"][-1] if ok else float("nan"))
            out["storm_p50_s"].append(percentile(r["done_at"], 50))
            if not ok:
                out.setdefault("errors", []).append(f"{len(r['done_at'])}/{storm_clients} caught up; {r['failures']}")
        finally:
            load.close()
    return out


def durable_publish(target: Target, *, publishes: int, publishers: int, runs: int) -> dict:
    """(5) acknowledged (durable) publishes/s with ``publishers`` concurrent connections over 100
    channels, no subscribers."""
    load = LoadProcess()
    rates, cpus = [], []
    try:
        load.call({"op": "pub_connect", "kind": "wsserver", "host": target.host, "port": target.port,
                   "token": token(), "publishers": publishers})
        channels = [f"durable.{i}" for i in range(100)]
        for _ in range(runs):
            cpu0 = cpu_of(target.pid)
            r = load.call({"op": "publish", "mode": "closed", "count": publishes, "channels": channels, "window": 4,
                           "acks": True}, timeout=600)
            rates.append(r["acked"] / r["wall"])
            cpus.append({"server_cpu_pct": 100 * (cpu_of(target.pid) - cpu0) / r["wall"],
                         "gen_cpu_pct": 100 * r["cpu"] / r["wall"], "acked": r["acked"], "sent": r["sent"]})
    finally:
        load.close()
    return {"publishes_per_s": rates, "detail": cpus}


__all__ = ["Path", "catch_up", "chat", "durable_publish", "fanout", "idle_memory", "start_peer", "start_wsserver"]
