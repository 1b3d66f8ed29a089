"""The soak scenario: many SDK clients behind the chaos proxy, events published over HTTP while
the clients publish too; afterwards every client must have every event once, in order.

Used by ``test_soak.py`` (about a minute) and by ``scripts/soak.sh`` (10+ minutes):
``python -m tests.proving_ground.soak --duration 600``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import trio
from attrs import asdict, define, field

import wsclient
from tests.support import API_KEY, ServerProcess, make_token
from wsserver.chaos_proxy import ChaosProxy, Profile

#: Server settings: pings every second, dead peers dropped a second later.
SERVER_ENV = {"WSSERVER_HEARTBEAT_INTERVAL": "1", "WSSERVER_HEARTBEAT_TIMEOUT": "1"}
#: Channels the HTTP publisher spreads its events over; client i follows two of them.
CHANNELS = [f"soak.{i}" for i in range(5)]
#: Where client publishes go (data carries the client and its counter).
PUB_CHANNEL = "soak.pub"


@define
class SoakConfig:
    clients: int = 50
    duration: float = 45.0  # seconds of disruption while publishing
    events: int = 2000  # HTTP publishes, spread over CHANNELS
    client_publishes: int = 10  # per client
    disruption_every: float = 3.0  # mean seconds between faults of one connection
    switch_every: float = 15.0  # mean seconds between network switches (all connections)
    converge_timeout: float = 60.0
    seed: int = 1


@define
class SoakReport:
    clients: int = 0
    disruptions: int = 0
    proxy: dict = field(factory=dict)
    reconnects: int = 0
    events_published: int = 0
    deliveries_expected: int = 0
    deliveries: int = 0
    losses: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    client_publishes: int = 0
    publishes_stored: int = 0
    publishes_duplicated: int = 0
    catch_ups: int = 0
    p50_catch_up: float = 0.0
    p99_catch_up: float = 0.0
    p99_downtime: float = 0.0
    connections_after: int = -1
    subscriptions_after: int = -1
    sockets_after: int = -1
    rss_before_kib: int = 0
    rss_after_kib: int = 0

    @property
    def passed(self) -> bool:
        return (
            self.losses == 0 and self.duplicates == 0 and self.out_of_order == 0
            and self.deliveries == self.deliveries_expected
            and self.publishes_stored == self.client_publishes and self.publishes_duplicated == 0
            and self.connections_after == 0 and self.subscriptions_after == 0 and self.sockets_after == 0
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ws_sockets(pid: int, port: int) -> int:
    """TCP sockets the server process holds on its WebSocket port, the listener excluded
    (the HTTP API's keep-alive sockets are hypercorn's business and not counted)."""
    out = subprocess.run(["ss", "-tanpH", "state", "all", "sport", "=", f":{port}"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line and not line.startswith("LISTEN"))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def publish_once(http: httpx.AsyncClient, body: dict) -> httpx.Response:
    """POST /api/v1/publish, retried with the same `id` when the HTTP connection breaks (the
    event may or may not be stored: the id makes the retry safe, as the contract promises)."""
    for attempt in range(5):
        try:
            answer = await http.post("/api/v1/publish", json=body)
            answer.raise_for_status()
            return answer
        except httpx.TransportError:
            if attempt == 4:
                raise
            await trio.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


class SoakClient:
    """One app: an SDK client that records what it receives and publishes its share."""

    def __init__(self, index: int, url: str, config: SoakConfig) -> None:
        self.index = index
        self.channels = [CHANNELS[index % len(CHANNELS)], CHANNELS[(index + 1) % len(CHANNELS)]]
        self.client = wsclient.Client(
            url, self._token, backoff=wsclient.Backoff(base=0.2, cap=5.0), heartbeat_slack=1.0, seed=index
        )
        self.received: dict[str, list[tuple[int, str]]] = {c: [] for c in self.channels}
        self.catch_ups: list[float] = []
        self.downtimes: list[float] = []
        self.published = 0
        self.config = config
        self._lives = 0

    def _token(self, reason: wsclient.TokenReason) -> str:
        return make_token(f"soak{self.index}", ttl=3600)

    async def consume(self) -> None:
        async for event in self.client.events:
            match event:
                case wsclient.ChannelEvent():
                    self.received[event.channel].append((event.seq, event.id))
                case wsclient.Live():
                    self._lives += 1
                    if self._lives > 1:  # the first is the initial connect, not a recovery
                        self.catch_ups.append(event.catch_up)
                        self.downtimes.append(event.downtime)
                case wsclient.Closed() if event.code != 1000:
                    raise AssertionError(f"client {self.index} gave up: {event}")

    async def publish_share(self, until: float) -> None:
        rng = random.Random(self.index)
        for n in range(self.config.client_publishes):
            await trio.sleep_until(trio.current_time() + rng.uniform(0, until / self.config.client_publishes))
            await self.client.publish(PUB_CHANNEL, "soak.client", {"client": self.index, "n": n})
            self.published += 1

    def caught_up(self, heads: dict[str, int]) -> bool:
        return all(len(self.received[c]) >= heads.get(c, 0) and (not self.received[c] or self.received[c][-1][0] >= heads.get(c, 0))
                   for c in self.channels)


async def run_soak(server: ServerProcess, config: SoakConfig, log=print) -> SoakReport:
    report = SoakReport(clients=config.clients)
    every = config.disruption_every
    profile = Profile("soak", latency=0.01, jitter=0.03, reset_every=every * 2.5, blackhole_every=every * 5,
                      stall_every=every * 2.5, stall_for=(0.2, 1.5), switch_every=config.switch_every, switch_outage=0.3)
    proxy = ChaosProxy("127.0.0.1", server.port, "clean", seed=config.seed)
    assert server.proc is not None
    heads: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=server.api_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as http:
        report.rss_before_kib = _rss_kib(server.proc.pid)
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            url = f"ws://127.0.0.1:{proxy.port}/ws"
            apps = [SoakClient(i, url, config) for i in range(config.clients)]
            async with trio.open_nursery() as apps_nursery:
                for app in apps:
                    apps_nursery.start_soon(app.consume)
                    await apps_nursery.start(app.client.run)
                    for channel in app.channels:
                        await app.client.subscribe(channel, last_seq=0)
                proxy.set_profile(profile)
                log(f"soak: {config.clients} clients through the chaos proxy, {config.duration:.0f}s of faults")

                async def http_publisher() -> None:
                    pause = config.duration / config.events
                    start = trio.current_time()
                    for n in range(config.events):
                        channel = CHANNELS[n % len(CHANNELS)]
                        r = await publish_once(http, {"channel": channel, "event": "soak.event", "data": {"n": n},
                                                      "id": f"soak-{config.seed}-{n}"})
                        heads[channel] = max(heads.get(channel, 0), r.json()["seq"])
                        await trio.sleep_until(start + (n + 1) * pause)  # a schedule, so slow calls do not stretch it

                async with trio.open_nursery() as load:
                    load.start_soon(http_publisher)
                    for app in apps:
                        load.start_soon(app.publish_share, config.duration * 0.9)
                proxy.set_profile("clean")
                log(f"soak: load done ({config.events} HTTP events, {config.clients * config.client_publishes} client publishes); converging")
                with trio.fail_after(config.converge_timeout):
                    while not all(app.caught_up(heads) for app in apps):
                        await trio.sleep(0.2)
                for app in apps:
                    await app.client.close()
            stats = proxy.stats
            report.proxy = asdict(stats)
            report.disruptions = stats.resets + stats.blackholes + stats.stalls + stats.switched  # per connection
            nursery.cancel_scope.cancel()
        # ---- figures
        report.events_published = config.events
        catch_ups = [t for app in apps for t in app.catch_ups]
        downtimes = [t for app in apps for t in app.downtimes]
        report.catch_ups = len(catch_ups)
        report.p50_catch_up = _percentile(catch_ups, 0.50)
        report.p99_catch_up = _percentile(catch_ups, 0.99)
        report.p99_downtime = _percentile(downtimes, 0.99)
        for app in apps:
            report.reconnects += app.client.stats.reconnects
            for channel in app.channels:
                got = [seq for seq, _id in app.received[channel]]
                expected = heads.get(channel, 0)
                report.deliveries_expected += expected
                report.deliveries += len(got)
                report.losses += len(set(range(1, expected + 1)) - set(got))
                report.duplicates += len(got) - len(set(got)) + len(app.received[channel]) - len({i for _s, i in app.received[channel]})
                report.out_of_order += sum(1 for a, b in zip(got, got[1:]) if b <= a)
            report.client_publishes += app.published
        stored: list[dict] = []
        after = 0
        while True:
            r = await http.get(f"/api/v1/channels/{PUB_CHANNEL}/history", params={"after": after, "limit": 1000})
            page = r.json()["events"]
            if not page:
                break
            stored.extend(page)
            after = page[-1]["seq"]
        keys = [(e["payload"]["client"], e["payload"]["n"]) for e in stored]
        report.publishes_stored = len(set(keys))
        report.publishes_duplicated = len(keys) - len(set(keys))
        with trio.move_on_after(15):  # then the figures show what was left behind
            while True:
                body = (await http.get("/api/v1/stats")).json()
                report.connections_after = len(body["connections"])
                report.subscriptions_after = sum(n["subscriptions"] for n in body["nodes"])
                report.sockets_after = _ws_sockets(server.proc.pid, server.port)
                if report.connections_after == 0 and report.sockets_after == 0:
                    break
                await trio.sleep(0.2)
        report.rss_after_kib = _rss_kib(server.proc.pid)
    return report


def format_report(report: SoakReport) -> str:
    return (
        f"SOAK {'PASS' if report.passed else 'FAIL'}: clients={report.clients} disruptions={report.disruptions} "
        f"reconnects={report.reconnects} events={report.events_published} deliveries={report.deliveries}/"
        f"{report.deliveries_expected} losses={report.losses} duplicates={report.duplicates} "
        f"out_of_order={report.out_of_order} client_publishes={report.client_publishes} stored={report.publishes_stored} "
        f"dup_stored={report.publishes_duplicated} p50_catch_up={report.p50_catch_up * 1000:.0f}ms "
        f"p99_catch_up={report.p99_catch_up * 1000:.0f}ms p99_downtime={report.p99_downtime * 1000:.0f}ms "
        f"(over {report.catch_ups} recoveries) connections_after={report.connections_after} "
        f"ws_sockets_after={report.sockets_after} rss={report.rss_before_kib}->{report.rss_after_kib}KiB "
        f"proxy={report.proxy}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.proving_ground.soak", description=__doc__)
    defaults = SoakConfig()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults (default 600)")
    parser.add_argument("--events", type=int, default=None, help="HTTP events (default: 40 per second of duration)")
    parser.add_argument("--client-publishes", type=int, default=None, help="per client (default: 1 per 5 s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    ns = parser.parse_args(argv)
    config = SoakConfig(
        clients=ns.clients, duration=ns.duration, events=ns.events or int(ns.duration * 40),
        client_publishes=ns.client_publishes or max(1, int(ns.duration / 5)), seed=ns.seed,
        converge_timeout=120.0,
    )
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "data", env=SERVER_ENV) as server:
        report = trio.run(run_soak, server, config)
    print(format_report(report), flush=True)
    if ns.json:
        ns.json.write_text(json.dumps(asdict(report), indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
