"""Fixtures for the proving ground: Trio mode, a real server with fast heartbeats, and a chaos
proxy in front of it (clean until a test injects faults)."""

from __future__ import annotations

import pytest
from pytest_trio.enable_trio_mode import pytest_fixture_setup  # noqa: F401 - trio fixtures here (see tests/conftest.py)

from tests.support import ServerProcess
from wsserver.chaos_proxy import ChaosProxy

#: Pings every 0.3 s and a 0.5 s timeout: black holes are found within a second.
FAST_ENV = {"WSSERVER_HEARTBEAT_INTERVAL": "0.3", "WSSERVER_HEARTBEAT_TIMEOUT": "0.5"}


@pytest.fixture
def server(tmp_path):
    with ServerProcess(tmp_path / "data", env=FAST_ENV) as proc:
        yield proc


@pytest.fixture
async def proxy(server, nursery):
    chaos = ChaosProxy("127.0.0.1", server.port, "clean", seed=42)
    await nursery.start(chaos.run)
    yield chaos
    nursery.cancel_scope.cancel()


def proxied_url(proxy: ChaosProxy) -> str:
    return f"ws://127.0.0.1:{proxy.port}/ws"
