"""Fixtures of the hostile-input suite: a real `wsserver serve` subprocess per module (so its
RSS can be read from /proc) and authenticated sync WebSocket clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import ServerProcess


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[ServerProcess]:
    # The fuzzing sends as fast as the server answers: a high frame rate keeps the per-connection
    # limiter (tested on its own by the limits suite) from dropping most of the hostile frames.
    env = {"WSSERVER_RATE_LIMIT_FRAMES": "100000", "WSSERVER_RATE_LIMIT_BYTES": "100000000"}
    with ServerProcess(tmp_path_factory.mktemp("hardening") / "data", env=env) as server:
        yield server
