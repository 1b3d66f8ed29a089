"""Cluster presence: each node writes its stats to Redis with a TTL and reads the other nodes',
so ``/api/v1/stats`` on any node shows the whole cluster (each peer as of its last write)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import cattrs
import orjson
import trio
from coredis.exceptions import RedisError

from wsserver.protocol import converter
from wsserver.redis_link import RedisLink
from wsserver.stats import Stats

log = logging.getLogger("wsserver.presence")

#: One hash tag for every presence key: one cluster slot, so MGET works on a cluster too.
NODE_KEY: Final = "wsserver:{presence}:node:"
INDEX_KEY: Final = "wsserver:{presence}:nodes"


class ClusterPresence:
    """Every ``interval`` seconds: write this node's stats (expiring after a few intervals, so a
    dead node disappears) and hand every other live node's latest to ``on_peers``.

    Args:
        link: the node's Redis connection.
        node_id: this node's name.
        statistics: this node's fresh stats (``Node.statistics``).
        on_peers: receives the other nodes' stats after each exchange.
        now_ms: wall clock in ms.
        publish: write this node's own stats (False: only read the others').
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        node_id: str,
        statistics: Callable[[], Stats],
        on_peers: Callable[[list[Stats]], None],
        now_ms: Callable[[], int],
        interval: float,
        publish: bool = True,
    ) -> None:
        self.link = link
        self.node_id = node_id
        self.statistics = statistics
        self.on_peers = on_peers
        self.now_ms = now_ms
        self.interval = interval
        self.publish = publish  # False: read the other nodes' stats only (a supervisor of workers)

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
        client, node_id = self.link.client, self.node_id
        now = self.now_ms()
        ttl = int(max(3 * self.interval, 2.0) * 1000)
        blob = orjson.dumps(converter.unstructure(self.statistics())) if self.publish else b""
        async with client.pipeline(transaction=False) as pipe:
            if self.publish:
                pipe.set(NODE_KEY + node_id, blob, px=ttl)
                pipe.zadd(INDEX_KEY, {node_id: now + ttl})
            pipe.zremrangebyscore(INDEX_KEY, 0, now)
            members = pipe.zrangebyscore(INDEX_KEY, now, float("inf"))
        others = [m.decode() for m in await members if m.decode() != node_id]
        peers: list[Stats] = []
        if others:
            for raw in await client.mget([NODE_KEY + other for other in others]):
                if raw is None:
                    continue
                try:
                    peers.append(converter.structure(orjson.loads(raw), Stats))
                except (orjson.JSONDecodeError, cattrs.BaseValidationError) as exc:
                    log.warning("ignoring unreadable stats of a peer: %s", exc)
        self.on_peers(peers)
