"""Kernel-level faults (slow tier, root): the conformance client in its own network namespace,
behind nftables packet loss and black holes and a `tc tbf` bandwidth limit. A black-holed
client must be dropped by the server's heartbeat within seconds, not the kernel's ~15 minutes."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.proving_ground import netns
from tests.support import ServerProcess, make_token
from tests.wsclient.harness import call

pytestmark = pytest.mark.slow

CONFORMANCE = Path(sys.executable).parent / "wsclient-conformance"
ENV = {"WSSERVER_HEARTBEAT_INTERVAL": "0.5", "WSSERVER_HEARTBEAT_TIMEOUT": "0.5"}


@pytest.fixture
def link():
    why = netns.unavailable()
    if why:
        pytest.skip(f"network-namespace tier unavailable: {why}")
    with netns.client_namespace() as made:
        yield made


@pytest.fixture
def ns_server(link, tmp_path):
    with ServerProcess(tmp_path / "data", env={**ENV, "WSSERVER_HOST": link.host_ip}) as server:
        yield server


class Conformance:
    """The conformance client running inside the namespace; ``lines`` grows as it prints."""

    def __init__(self, link: netns.Link, server: ServerProcess, token_file: Path, *args: str) -> None:
        url = f"ws://{link.host_ip}:{server.port}/ws"
        self.argv = link.exec_argv(str(CONFORMANCE), "--url", url, "--token-file", str(token_file), *args)
        self.lines: list[dict] = []
        self.returncode: int | None = None
        self._changed = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(functools.partial(trio.run_process, self.argv, stdout=subprocess.PIPE, check=False))
            task_status.started()
            buffer = b""
            async for chunk in proc.stdout:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                self.lines.extend(json.loads(line) for line in complete)
                self._changed.set()
                self._changed = trio.Event()
        self.returncode = proc.returncode

    async def wait_line(self, predicate, timeout: float) -> None:
        with trio.fail_after(timeout):
            while not any(predicate(line) for line in self.lines):
                await self._changed.wait()

    def seqs(self, channel: str) -> list[int]:
        return [ln["event"]["seq"] for ln in self.lines if "event" in ln and ln["event"]["channel"] == channel]


async def test_loss_and_thin_bandwidth_lose_nothing(link, ns_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(make_token("nsuser"))
    for i in range(300):
        await call(ns_server.publish, "k.a", data={"i": i, "pad": "x" * 100})
    link.loss(5)
    link.bandwidth("256kbit")
    client = Conformance(link, ns_server, token_file, "--channel", "k.a", "--until-seq", "400",
                         "--publish-channel", "k.p", "--publish-count", "30")
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            for i in range(300, 400):
                await call(ns_server.publish, "k.a", data={"i": i, "pad": "x" * 100})
    assert client.returncode == 0, client.lines[-3:]
    assert client.seqs("k.a") == list(range(1, 401))
    status, body = await call(ns_server.api, "GET", "/api/v1/channels/k.p/history?after=0&limit=100")
    assert sorted(e["payload"]["index"] for e in body["events"]) == list(range(30))


async def test_black_holed_client_is_dropped_by_the_heartbeat_and_recovers(link, ns_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(make_token("nsuser"))
    for i in range(5):
        await call(ns_server.publish, "k.b", data={"i": i})
    client = Conformance(link, ns_server, token_file, "--channel", "k.b", "--until-seq", "10")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            await client.wait_line(lambda ln: ln.get("event", {}).get("seq") == 5, timeout=20)
            link.black_hole()
            started = trio.current_time()
            with trio.fail_after(5):  # heartbeat 0.5 s + timeout 0.5 s, far below TCP's ~15 min
                while (await call(ns_server.api, "GET", "/api/v1/stats"))[1]["connections"]:
                    await trio.sleep(0.1)
            detected = trio.current_time() - started
            for i in range(5, 10):
                await call(ns_server.publish, "k.b", data={"i": i})
            link.clear_faults()
    print(f"\nblack hole detected by the server heartbeat after {detected:.2f}s")
    assert client.returncode == 0, client.lines[-3:]
    assert client.seqs("k.b") == list(range(1, 11))
    assert {"state": "reconnecting"} in client.lines
