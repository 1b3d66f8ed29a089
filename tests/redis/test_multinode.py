"""Several real `wsserver serve` processes on one real Redis: fan-out across nodes, resume on
another node after a SIGKILL, pub/sub loss repaired, lost Redis data → new epoch, one event per
publish id cluster-wide, Redis down → 503 with clients kept, and cluster-wide stats."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import trio

from tests.redis.servers import RedisServer
from tests.support import API_KEY, PLAIN_HTTP, ServerProcess, make_token
from tests.wsserver.harness import Client

pytestmark = pytest.mark.redis

#: Absolute limit of every wait on the wire.
WAIT = 10.0
FAST = {"WSSERVER_HEARTBEAT_INTERVAL": "0.2", "WSSERVER_LOG_LEVEL": "warning"}

NodeFactory = Callable[[str], ServerProcess]


@pytest.fixture
def start_node(redis_server: RedisServer, tmp_path) -> Iterator[NodeFactory]:
    started: list[ServerProcess] = []

    def start(name: str, url: str | None = None) -> ServerProcess:
        env = {**FAST, "WSSERVER_REDIS_URL": url or redis_server.url, "WSSERVER_NODE_ID": name}
        node = ServerProcess(tmp_path / name, env=env)
        started.append(node)
        return node.start()

    try:
        yield start
    finally:
        for node in started:
            node.kill()


async def api(node: ServerProcess, method: str, path: str, body: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.api_url, timeout=WAIT, verify=PLAIN_HTTP) as http:
        return await http.request(method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})


async def publish(node: ServerProcess, channel: str, n: int = 0, id: str | None = None) -> dict:
    body = {"channel": channel, "event": "test.event", "data": {"n": n}}
    if id is not None:
        body["id"] = id
    response = await api(node, "POST", "/api/v1/publish", body)
    assert response.status_code == 200, response.text
    return response.json()


async def connect(nursery: trio.Nursery, node: ServerProcess, user: str = "alice") -> Client:
    client = await Client.open(nursery, node.ws_url)
    await client.auth(make_token(user))
    return client


async def next_events(client: Client, n: int) -> list[dict]:
    """The next ``n`` channel events, skipping nothing else but pongs."""
    out = []
    while len(out) < n:
        frame = await client.recv(WAIT)
        if frame["type"] == "pong":
            continue
        assert "." in frame["type"], frame
        out.append(frame)
    return out


async def test_publish_on_one_node_reaches_a_subscriber_on_another(start_node, redis_server, nursery):
    a, b = start_node("a"), start_node("b")
    client = await connect(nursery, a)
    await client.subscribe("room")
    for i in range(5):
        await publish(b, "room", i)
    events = await next_events(client, 5)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["payload"]["n"] for e in events] == [0, 1, 2, 3, 4]
    # a stranger's message on our pub/sub channel is ignored, not fatal
    redis_server.cli("PUBLISH", "wsserver:{room}", "not an event")
    await publish(b, "room", 5)
    assert [e["seq"] for e in await next_events(client, 1)] == [6]
    assert (await api(a, "GET", "/healthz")).status_code == 200


async def test_client_of_a_killed_node_resumes_on_another_with_exactly_the_missed_events(start_node, nursery):
    a, b, c = start_node("a"), start_node("b"), start_node("c")
    first = await connect(nursery, a)
    await first.subscribe("orders")
    for i in range(3):
        await publish(b, "orders", i)
    seen = await next_events(first, 3)
    epoch = seen[-1]["epoch"]
    a.kill()
    for i in range(3, 7):
        await publish(b, "orders", i)
    again = await connect(nursery, c)
    subscribed = await again.subscribe("orders", last_seq=3, epoch=epoch)
    assert subscribed["payload"]["recovery"] == "replay" and subscribed["payload"]["headSeq"] == 7
    assert [e["seq"] for e in await next_events(again, 4)] == [4, 5, 6, 7]
    await publish(b, "orders", 7)
    assert [e["seq"] for e in await next_events(again, 1)] == [8]


async def test_killing_the_pubsub_connection_mid_stream_loses_nothing(start_node, redis_server, nursery):
    a, b = start_node("a"), start_node("b")
    client = await connect(nursery, a)
    await client.subscribe("stream")
    total = 150

    async def publisher() -> None:
        for i in range(total):
            await publish(b, "stream", i)
            if i % 25 == 10:
                redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")

    nursery.start_soon(publisher)
    with trio.fail_after(60):
        events = await next_events(client, total)
    assert [e["seq"] for e in events] == list(range(1, total + 1))
    # the tail case: events published while the connection is down, and nothing after them
    redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
    for i in range(3):
        await publish(b, "stream", total + i)
    assert [e["seq"] for e in await next_events(client, 3)] == [total + 1, total + 2, total + 3]
    # nothing more (no duplicate) arrives after the last one
    await client.send("ping")
    assert (await client.recv(WAIT))["type"] == "pong"
    metrics = (await api(a, "GET", "/metrics")).text
    assert "wsserver_backplane_reconnects_total" in metrics


async def test_stalled_subscription_is_caught_up_by_the_audit(start_node, redis_server, nursery):
    """The last event of a burst is lost on pub/sub and nothing follows: the audit notices."""
    a = start_node("a")
    client = await connect(nursery, a)
    await client.subscribe("quiet")
    await publish(a, "quiet", 0)
    assert [e["seq"] for e in await next_events(client, 1)] == [1]
    # append behind the backplane's back: in the store, never published (what a lost message looks like)
    redis_server.cli("XADD", "wsserver:{quiet}:log", "2-0", "d",
                     '2\n' + (await client_epoch(a, "quiet")) + '\n1\nlost-1\ntest.event\n'
                     + '{"type":"test.event","id":"lost-1","timestamp":1,"channel":"quiet","seq":2,"epoch":"'
                     + (await client_epoch(a, "quiet")) + '","payload":{}}')
    redis_server.cli("HSET", "wsserver:{quiet}:meta", "seq", "2")
    (event,) = await next_events(client, 1)
    assert (event["seq"], event["id"]) == (2, "lost-1")


async def client_epoch(node: ServerProcess, channel: str) -> str:
    response = await api(node, "GET", f"/api/v1/channels/{channel}")
    assert response.status_code == 200, response.text
    return response.json()["epoch"]


async def test_redis_restarted_without_persistence_gives_a_new_epoch_and_a_reset(start_node, redis_server, nursery):
    a, b = start_node("a"), start_node("b")
    client = await connect(nursery, a)
    await client.subscribe("board")
    for i in range(3):
        await publish(b, "board", i)
    old = await next_events(client, 3)
    redis_server.restart()
    with trio.fail_after(WAIT):
        while True:
            response = await api(b, "POST", "/api/v1/publish", {"channel": "board", "event": "test.event", "data": {}})
            if response.status_code == 200:
                break
            await trio.sleep(0.05)
    fresh = response.json()
    assert fresh["epoch"] != old[0]["epoch"] and fresh["seq"] == 1
    frame = await client.recv(WAIT)
    assert frame["type"] == "subscribed" and frame["payload"]["recovery"] == "reset", frame
    assert frame["payload"]["epoch"] == fresh["epoch"]
    await publish(b, "board", 9)
    # The reset may come before or after the first new-epoch publish: either way the client
    # gets every event of the new epoch after the reset's headSeq, and nothing else.
    head = frame["payload"]["headSeq"]
    events = await next_events(client, 2 - head)
    assert [(e["seq"], e["epoch"]) for e in events] == [(s, fresh["epoch"]) for s in range(head + 1, 3)]
    # a client coming back with the old position is reset too, never replayed into the new epoch
    late = await connect(nursery, b, "bob")
    again = await late.subscribe("board", last_seq=3, epoch=old[0]["epoch"])
    assert again["payload"]["recovery"] == "reset" and again["payload"]["epoch"] == fresh["epoch"]


async def test_one_publish_id_on_two_nodes_is_one_event(start_node, nursery):
    a, b = start_node("a"), start_node("b")
    client = await connect(nursery, a)
    await client.subscribe("pay")
    answers: list[dict] = []

    async def send(node: ServerProcess) -> None:
        answers.append(await publish(node, "pay", 1, id="payment-42"))

    async with trio.open_nursery() as inner:
        inner.start_soon(send, a)
        inner.start_soon(send, b)
    assert {(x["seq"], x["epoch"]) for x in answers} == {(1, answers[0]["epoch"])}
    await publish(b, "pay", 2)
    assert [e["seq"] for e in await next_events(client, 2)] == [1, 2]


async def test_redis_down_means_503_fast_clients_stay_and_everything_resumes(start_node, redis_server, nursery):
    a, idle = start_node("a"), start_node("idle")  # idle: no subscriber, no publish
    client = await connect(nursery, a)
    await client.subscribe("ops")
    await publish(a, "ops", 0)
    await next_events(client, 1)
    redis_server.stop()
    started = time.monotonic()
    response = await api(a, "POST", "/api/v1/publish", {"channel": "ops", "event": "test.event", "data": {}})
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable", response.text
    assert time.monotonic() - started < WAIT
    ref = await client.send("publish", {"channel": "ops", "event": "test.event", "data": {}})
    error = await client.expect("error", ref=ref)
    assert error["payload"]["code"] == "unavailable"
    assert (await api(a, "GET", "/healthz")).status_code == 503
    await client.send("ping")
    assert (await client.expect("pong"))["type"] == "pong"  # still connected

    assert (await api(idle, "GET", "/healthz")).status_code == 503

    redis_server.start()
    with trio.fail_after(WAIT):
        for node in (a, idle):
            while (await api(node, "GET", "/healthz")).status_code != 200:
                await trio.sleep(0.05)
    fresh = await publish(a, "ops", 1)
    frame = await client.recv(WAIT)
    assert frame["type"] == "subscribed" and frame["payload"]["recovery"] == "reset", frame
    assert frame["payload"]["epoch"] == fresh["epoch"]
    await publish(a, "ops", 2)
    # the reset may land before or after the first new-epoch event: everything after its headSeq follows
    head = frame["payload"]["headSeq"]
    events = await next_events(client, fresh["seq"] + 1 - head)
    assert [e["seq"] for e in events] == list(range(head + 1, fresh["seq"] + 2))


async def test_stats_on_any_node_show_the_whole_cluster(start_node, nursery):
    a, b = start_node("a"), start_node("b")
    client = await connect(nursery, a)
    await client.subscribe("seen")
    with trio.fail_after(WAIT):
        while True:
            stats = (await api(b, "GET", "/api/v1/stats")).json()
            nodes = {n["nodeId"] for n in stats["nodes"]}
            if nodes == {"a", "b"} and any(c["nodeId"] == "a" for c in stats["connections"]):
                break
            await trio.sleep(0.1)
    assert {n["backplane"] for n in stats["nodes"]} == {"redis"}
    assert any(ch["channel"] == "seen" and ch["nodeId"] == "a" for ch in stats["channels"])


async def test_health_goes_red_with_the_reason_while_messages_cannot_round_trip(start_node, redis_server):
    """CLIENT PAUSE WRITE holds every PUBLISH: the canary does not come back, /healthz turns 503
    and the metric says why; once Redis lets writes through again the node is healthy again."""
    a = start_node("a")
    redis_server.cli("CLIENT", "PAUSE", "3000", "WRITE")
    with trio.fail_after(WAIT):
        while (await api(a, "GET", "/healthz")).status_code != 503:
            await trio.sleep(0.05)
    metrics = (await api(a, "GET", "/metrics")).text
    assert 'wsserver_backplane_problem{reason="canary"} 1.0' in metrics, metrics
    with trio.fail_after(WAIT):
        while (await api(a, "GET", "/healthz")).status_code != 200:
            await trio.sleep(0.05)
    assert a.stop() == 0  # a Redis-mode node drains and exits cleanly
