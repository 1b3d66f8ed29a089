"""Two server processes on a real 3-master Redis Cluster: channels spread over every shard,
delivered in order without gaps through sharded pub/sub (also across pub/sub kills), and replayed."""

from __future__ import annotations

import pytest
import trio

from tests.redis.test_multinode import FAST, WAIT, api, connect, publish
from tests.support import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.cluster]

CHANNELS = [f"room-{i}" for i in range(12)]
PER_CHANNEL = 15


@pytest.fixture
def cluster_nodes(redis_cluster, tmp_path):
    for node in redis_cluster.nodes:
        node.cli("FLUSHALL")
    nodes = [ServerProcess(tmp_path / name, env={**FAST, "WSSERVER_REDIS_URL": redis_cluster.url,
                                                 "WSSERVER_NODE_ID": name}) for name in ("a", "b")]
    try:
        yield [node.start() for node in nodes]
    finally:
        for node in nodes:
            node.kill()


async def test_ordered_gapless_delivery_and_replay_over_sharded_pubsub(redis_cluster, cluster_nodes, nursery):
    a, b = cluster_nodes
    client = await connect(nursery, a)
    for channel in CHANNELS:
        await client.subscribe(channel)

    async def publisher(channel: str) -> None:
        for i in range(PER_CHANNEL):
            await publish(b, channel, i)
            if channel == CHANNELS[0] and i == 5:
                for node in redis_cluster.nodes:
                    node.cli("CLIENT", "KILL", "TYPE", "pubsub")

    async with trio.open_nursery() as publishers:
        for channel in CHANNELS:
            publishers.start_soon(publisher, channel)

    got: dict[str, list[int]] = {c: [] for c in CHANNELS}
    with trio.fail_after(30):
        while sum(map(len, got.values())) < len(CHANNELS) * PER_CHANNEL:
            frame = await client.recv(WAIT)
            assert "." in frame["type"], frame
            got[frame["channel"]].append(frame["seq"])
    for channel, seqs in got.items():
        assert seqs == list(range(1, PER_CHANNEL + 1)), channel

    # the channels really are spread over the three shards
    for node in redis_cluster.nodes:
        assert int(node.cli("DBSIZE").strip()) > 0, "a shard holds no channel"
    stats = (await api(a, "GET", "/api/v1/stats")).json()
    assert {n["backplane"] for n in stats["nodes"] if n["nodeId"] == "a"} == {"redis-cluster"}

    late = await connect(nursery, b, "bob")
    for channel in CHANNELS:
        subscribed = await late.subscribe(channel, last_seq=5)
        assert subscribed["payload"]["recovery"] == "replay"
        replayed = [(await late.recv(WAIT))["seq"] for _ in range(PER_CHANNEL - 5)]
        assert replayed == list(range(6, PER_CHANNEL + 1)), channel
