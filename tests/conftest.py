"""Fixtures shared by every tier: ``server_process`` (a real `wsserver serve` subprocess)."""

from __future__ import annotations

import pytest

from tests.support import ServerProcess


@pytest.fixture
def server_process(tmp_path):
    with ServerProcess(tmp_path / "data") as server:
        yield server
