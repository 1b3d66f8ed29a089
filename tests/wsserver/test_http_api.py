"""The internal HTTP API (CONTRACT §5) against an in-process server."""

from __future__ import annotations

import trio

from tests.wsserver.harness import start_server


async def test_every_api_call_needs_the_key(server):
    for method, path, body in [
        ("POST", "/api/v1/publish", {"channel": "a", "event": "a.b", "data": {}}),
        ("GET", "/api/v1/channels/a", None),
        ("GET", "/api/v1/channels/a/history", None),
        ("PUT", "/api/v1/channels/a/snapshot", {"state": {}, "seq": 0}),
        ("POST", "/api/v1/disconnect", {"userId": "x", "code": 1000}),
        ("GET", "/api/v1/stats", None),
    ]:
        for key in (None, "wrong-key-000"):
            r = await server.api(method, path, body, key=key)
            assert r.status_code == 401, (method, path, key, r.text)
            assert r.json()["error"]["code"] == "auth_failed"
    assert (await server.api("GET", "/healthz", key=None)).status_code == 200


async def test_publish_validation_names_the_field(server):
    cases = [
        ({"channel": "a", "event": "nodot", "data": {}}, "event"),
        ({"channel": "a b", "event": "a.b", "data": {}}, "channel"),
        ({"channel": "a", "event": "a.b", "data": [1]}, "data"),
        ({"channel": "a", "event": "a.b"}, "data"),
        ({"channel": "a", "event": "a.b", "data": {}, "id": 5}, "id"),
    ]
    for body, field in cases:
        r = await server.api("POST", "/api/v1/publish", body)
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["error"]["message"], (body, r.text)
    async with __import__("httpx").AsyncClient(base_url=server.info.api_url) as http:
        r = await http.post("/api/v1/publish", content=b"{oops", headers={"Authorization": "Bearer test-api-key-123"})
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
        r = await http.post("/api/v1/publish", content=b"x" * 200_000, headers={"Authorization": "Bearer test-api-key-123"})
        assert r.status_code == 413


async def test_channel_info_history_paging_and_unknown_routes(server):
    r = await server.api("GET", "/api/v1/channels/never.used")
    assert r.status_code == 200
    info = r.json()
    assert info["headSeq"] == 0 and info["oldestSeq"] == 0 and info["subscribers"] == 0 and info["epoch"]
    for i in range(5):
        await server.publish("c.p", {"i": i})
    client = await server.connect()
    await client.subscribe("c.p")
    info = (await server.api("GET", "/api/v1/channels/c.p")).json()
    assert info == {"channel": "c.p", "epoch": info["epoch"], "headSeq": 5, "oldestSeq": 1, "subscribers": 1}
    page = (await server.api("GET", "/api/v1/channels/c.p/history?after=1&limit=2")).json()["events"]
    assert [(e["seq"], e["payload"]["i"], e["type"], e["channel"]) for e in page] == [(2, 1, "message.new", "c.p"), (3, 2, "message.new", "c.p")]
    assert set(page[0]) >= {"type", "id", "timestamp", "payload", "channel", "seq", "epoch"}
    assert (await server.api("GET", "/api/v1/channels/c.p/history?after=-1")).status_code == 400
    assert (await server.api("GET", "/api/v1/channels/c.p/history?limit=5000")).status_code == 400
    assert (await server.api("GET", "/api/v1/channels/c.p/history?limit=x")).status_code == 400
    assert (await server.api("GET", "/api/v1/channels/bad%20name")).status_code == 400
    r = await server.api("GET", "/api/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    await client.aclose()


async def test_disconnect_by_user_and_by_connection(server):
    a1 = await server.connect("a")
    a2 = await server.connect("a")
    b = await server.connect("b")
    r = await server.api("POST", "/api/v1/disconnect", {"userId": "a", "code": 4003, "reason": "banned"})
    assert r.json() == {"disconnected": 2}
    assert await a1.closed() == 4003 and await a2.closed() == 4003
    stats = (await server.api("GET", "/api/v1/stats")).json()
    (conn,) = stats["connections"]
    assert conn["userId"] == "b"
    r = await server.api("POST", "/api/v1/disconnect", {"connectionId": conn["connectionId"], "code": 1000})
    assert r.json() == {"disconnected": 1}
    assert await b.closed() == 1000
    assert (await server.api("POST", "/api/v1/disconnect", {"code": 1000})).status_code == 400
    assert (await server.api("POST", "/api/v1/disconnect", {"userId": "x", "code": 1234})).status_code == 400
    assert (await server.api("POST", "/api/v1/disconnect", {"userId": "nobody", "code": 1000})).json() == {"disconnected": 0}


async def test_stats_show_subscriptions_with_seq_lag(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, send_queue_size=100_000, send_queue_bytes=1 << 30)
    fast = await srv.connect("fast")
    await fast.subscribe("c.lag")
    slow = await srv.connect("slow")
    await slow.subscribe("c.lag")
    payload = {"blob": "y" * 20_000}
    for _ in range(300):  # the slow client reads nothing: its socket fills, its queue grows
        await srv.publish("c.lag", payload)
        await fast.events(1)
    stats = (await srv.api("GET", "/api/v1/stats")).json()
    by_user = {c["userId"]: c for c in stats["connections"]}
    assert by_user["fast"]["maxLag"] == 0
    assert by_user["slow"]["maxLag"] > 0 and by_user["slow"]["queueDepth"] > 0
    (sub,) = by_user["slow"]["subscriptions"]
    assert sub["channel"] == "c.lag" and sub["headSeq"] == 300 and sub["lag"] == 300 - sub["lastSentSeq"]
    assert sub["state"] == "live"
    (chan,) = stats["channels"]
    assert chan == {"channel": "c.lag", "headSeq": 300, "subscribers": 2, "worstLag": sub["lag"], "nodeId": chan["nodeId"]}
    (node,) = stats["nodes"]
    assert node["connections"] == 2 and node["eventsPublished"] == 300 and node["healthy"] is True
    assert by_user["slow"]["tokenExpiresIn"] > 500


async def test_healthz_and_metrics(server):
    client = await server.connect()
    await client.subscribe("m.c")
    await server.publish("m.c", {})
    await client.events(1)
    bad = await server.connect(auth=False)
    await bad.send("auth", {"token": "nope"})
    await bad.closed()
    r = await server.api("GET", "/healthz", key=None)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    text = (await server.api("GET", "/metrics", key=None)).text
    for needle in ["wsserver_connections_opened_total", "wsserver_frames_in_total", "wsserver_frames_out_total",
                   'wsserver_auth_failures_total{reason="malformed"}', 'wsserver_closes_total{code="4001"}',
                   'wsserver_publishes_total{source="http"} 1.0', "wsserver_connections 1.0"]:
        assert needle in text, needle
    await client.aclose()


async def test_healthz_goes_red_while_draining(server):
    from tests.wsserver.test_session import _raw_upgrade

    sock = await _raw_upgrade(server.info.port)  # never answers the close: keeps the drain busy
    with trio.fail_after(5):
        while not server.node.hub.connections:
            await trio.sleep(0.01)
    server.server.request_shutdown()
    with trio.fail_after(5):
        while not server.node.draining:  # the drain starts on the server's next turn
            await trio.lowlevel.checkpoint()
    r = await server.api("GET", "/healthz", key=None)
    assert r.status_code == 503 and r.json()["status"] == "draining"
    sock.close()


async def test_an_endless_body_is_refused_while_it_streams(server):
    """Bodies are read as a stream with a limit: a chunked body that never ends is answered 413
    once it passes the limit, instead of being buffered whole first (memory)."""
    stream = await trio.open_tcp_stream(server.info.api_host, server.info.api_port)
    head = (
        "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-api-key-123\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    await stream.send_all(head.encode())
    chunk = b"%x\r\n%s\r\n" % (32 * 1024, b" " * 32 * 1024)
    answer = b""
    with trio.fail_after(5):
        for _ in range(8):  # 256 KiB, never the final chunk
            await stream.send_all(chunk)
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    await stream.aclose()
