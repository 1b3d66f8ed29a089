"""Runs the store contract suite (``tests/store/contract.py``) against the Redis log, standalone
and on a 3-master cluster, plus the Redis-only rules: epochs follow the server's identity. (The
embedded SQLite log and the in-memory store run it in the default tier: tests/store/.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from tests.redis.servers import RedisServer
from tests.store.contract import CONTRACT, DEFAULT_RETENTION, request
from wsserver.config import Retention
from wsserver.redis_link import RedisLink
from wsserver.store.redis import RedisStore

pytestmark = pytest.mark.redis


class RedisHarness:
    def __init__(self, server: RedisServer | None, url: str) -> None:
        self.server = server
        self.url = url

    @asynccontextmanager
    async def open(self, retention: Callable[[str], Retention] = lambda c: DEFAULT_RETENTION) -> AsyncIterator[RedisStore]:
        async with RedisLink(self.url).open() as link:
            store = RedisStore(link, retention=retention)
            async with trio.open_nursery() as nursery:
                await nursery.start(store.run)
                yield store
                nursery.cancel_scope.cancel()

    def lose_data(self) -> None:
        assert self.server is not None
        self.server.restart()


@pytest.fixture
def harness(redis_server):
    return RedisHarness(redis_server, redis_server.url)


@pytest.mark.parametrize("case", CONTRACT, ids=lambda f: f.__name__)
async def test_contract(harness, case):
    with trio.fail_after(60):
        await case(harness)


@pytest.mark.cluster
@pytest.mark.parametrize("case", [c for c in CONTRACT if c.__name__ != "lost_data_means_new_epoch"],
                         ids=lambda f: f.__name__)
async def test_contract_on_cluster(redis_cluster, case):
    for node in redis_cluster.nodes:
        node.cli("FLUSHALL")
    with trio.fail_after(60):
        await case(RedisHarness(None, redis_cluster.url))


async def test_flushed_channel_gets_a_new_epoch(redis_server):
    """Keys gone (FLUSHALL, eviction) on the same server: the next append starts a new epoch."""
    h = RedisHarness(redis_server, redis_server.url)
    async with h.open() as store:
        before = await store.append(request("f"))
        redis_server.cli("FLUSHALL")
        after = await store.append(request("f"))
        assert after.epoch != before.epoch and after.seq == 1


async def test_restart_with_data_still_changes_the_epoch(redis_server):
    """Another server identity (restart, failover) may have lost acknowledged writes even when
    the keys are there: the next append starts a new epoch instead of continuing the seq."""
    h = RedisHarness(redis_server, redis_server.url)
    async with h.open() as store:
        before = [await store.append(request("p")) for _ in range(3)]
        redis_server.cli("DEBUG", "RELOAD", check=False)  # same run id: keys kept, nothing changes
        same = await store.append(request("p"))
        assert (same.epoch, same.seq) == (before[0].epoch, 4)
        # pretend the last write came from another server (what a failover or restart looks like)
        redis_server.cli("HSET", "wsserver:{p}:meta", "rid", "0" * 40)
        after = await store.append(request("p"))
        assert after.epoch != before[0].epoch and after.seq == 1
