"""Fixtures for the SDK tests: Trio mode for this directory, and one real server per module
with fast heartbeats (tests use their own users and channels, so they can share it)."""

from __future__ import annotations

import pytest
from pytest_trio.enable_trio_mode import pytest_fixture_setup  # noqa: F401 - trio fixtures here (see tests/conftest.py)

from tests.support import ServerProcess

#: Server settings for the SDK tests: pings every 0.3 s, so dead links show within a second.
FAST_ENV = {"WSSERVER_HEARTBEAT_INTERVAL": "0.3", "WSSERVER_HEARTBEAT_TIMEOUT": "0.5"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("sdk") / "data", env=FAST_ENV) as proc:
        yield proc
