"""Fixtures for the server's own tests: an in-process server on free ports (Trio mode for this
directory only) and a small protocol client over a real WebSocket."""

from __future__ import annotations

import pytest
from pytest_trio.enable_trio_mode import pytest_fixture_setup  # noqa: F401 - trio fixtures here (see tests/conftest.py)

from tests.wsserver.harness import start_server


@pytest.fixture
async def server(nursery, tmp_path):
    """A started server (ServerHandle) with default test configuration."""
    return await start_server(nursery, tmp_path)
