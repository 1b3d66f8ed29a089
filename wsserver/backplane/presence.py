"""Cluster presence: each node writes its stats to Redis with a TTL and reads the other nodes',
so ``/api/v1/stats`` on any node shows the whole cluster (each peer as of its last write)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import cattrs
import orjson
import trio
from coredis.exceptions import RedisError

from wsserver.protocol import converter
from wsserver.redis_link import RedisLink
from wsserver.stats import Stats, local_stats

if TYPE_CHECKING:
    from wsserver.node import Node

log = logging.getLogger("wsserver.presence")

#: One hash tag for every presence key: one cluster slot, so MGET works on a cluster too.
NODE_KEY: Final = "wsserver:{presence}:node:"
INDEX_KEY: Final = "wsserver:{presence}:nodes"


class ClusterPresence:
    """Every ``interval`` seconds: write this node's stats (expiring after a few intervals, so a
    dead node disappears) and refresh ``node.peers`` with every other live node's."""

    def __init__(self, link: RedisLink, node: Node, *, interval: float) -> None:
        self.link = link
        self.node = node
        self.interval = interval

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                with trio.fail_after(max(self.interval, 1.0)):
                    await self.exchange()
            except (RedisError, OSError, trio.TooSlowError) as exc:
                log.debug("stats exchange skipped: %s", exc)
            await trio.sleep(self.interval)

    async def exchange(self) -> None:
        node, client = self.node, self.link.client
        now = node.now_ms()
        ttl = int(max(3 * self.interval, 2.0) * 1000)
        blob = orjson.dumps(converter.unstructure(local_stats(node)))
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(NODE_KEY + node.node_id, blob, px=ttl)
            pipe.zadd(INDEX_KEY, {node.node_id: now + ttl})
            pipe.zremrangebyscore(INDEX_KEY, 0, now)
            members = pipe.zrangebyscore(INDEX_KEY, now, float("inf"))
        others = [m.decode() for m in await members if m.decode() != node.node_id]
        peers: list[Stats] = []
        if others:
            for raw in await client.mget([NODE_KEY + other for other in others]):
                if raw is None:
                    continue
                try:
                    peers.append(converter.structure(orjson.loads(raw), Stats))
                except (orjson.JSONDecodeError, cattrs.BaseValidationError) as exc:
                    log.warning("ignoring unreadable stats of a peer: %s", exc)
        node.peers = peers
