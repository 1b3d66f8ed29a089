"""Fixtures shared by every tier (``server_process``: a real `wsserver serve` subprocess), and
Trio mode for the directories whose tests are Trio tests.

pytest calls ``pytest_collection_modifyitems`` with every collected item whichever conftest
defines it, so importing pytest-trio's ``enable_trio_mode`` in a subdirectory would turn the
asyncio tests of ``tests/admin_tui`` into Trio tests too. Marking happens here, by directory;
the subdirectories import only the (directory-scoped) fixture hook.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_trio.plugin import automark

from tests.support import ServerProcess

TRIO_DIRS = ("wsserver", "redis", "proving_ground", "wsclient", "store")
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    roots = [_HERE / name for name in TRIO_DIRS]
    automark([item for item in items if any(Path(str(item.fspath)).is_relative_to(root) for root in roots)])


@pytest.fixture
def server_process(tmp_path):
    with ServerProcess(tmp_path / "data") as server:
        yield server
