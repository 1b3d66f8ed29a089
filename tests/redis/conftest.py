"""Fixtures of the Redis tier: a private `redis-server` per module (never the machine's shared
one) and a 3-master Redis Cluster, both stopped in a finally. Trio mode for this directory."""

from __future__ import annotations

import pytest
from pytest_trio.enable_trio_mode import pytest_fixture_setup  # noqa: F401 - trio fixtures here (see tests/conftest.py)

from tests.redis.servers import RedisCluster, RedisServer


@pytest.fixture
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
