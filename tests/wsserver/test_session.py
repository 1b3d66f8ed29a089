"""Connection-level rules over real sockets: auth, refresh, expiry, heartbeat, limits, errors."""

from __future__ import annotations

import json
import socket
import time
from functools import partial

import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.wsserver.harness import SECRET, WAIT, Client, make_token, start_server


async def test_auth_ok_first_and_fields(server):
    client = await server.connect("alice", auth=False)
    ok = await client.auth(make_token("alice", ttl=300))
    p = ok["payload"]
    assert p["userId"] == "alice"
    assert p["heartbeatInterval"] == 25_000
    assert p["maxMessageSize"] == 65536
    assert abs(p["expiresAt"] - (time.time() + 300) * 1000) < 5000
    assert p["sessionId"]
    await client.aclose()


async def test_frames_before_auth_are_unauthenticated_but_ping_works(server):
    client = await server.connect(auth=False)
    ref = await client.send("subscribe", {"channel": "chat.a"})
    err = await client.expect("error", ref=ref)
    assert err["payload"]["code"] == "unauthenticated"
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)
    await client.auth(make_token())
    await client.aclose()


async def test_subscribe_right_behind_auth_is_answered_after_it(server):
    client = await server.connect(auth=False)
    a = await client.send("auth", {"token": make_token()})
    s = await client.send("subscribe", {"channel": "chat.a"})
    await client.expect("auth_ok", ref=a)
    await client.expect("subscribed", ref=s)
    await client.aclose()


async def test_auth_timeout_closes_4008(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, auth_timeout=0.3)
    client = await srv.connect(auth=False)
    assert await client.closed() == 4008


def _rsa_pair(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "pub.pem"
    path.write_bytes(pub)
    return key, pub, path


@pytest.mark.parametrize(
    "case",
    # (a `kid` with one configured key is ignored, CONTRACT §4: test_auth_keys.py covers kids)
    ["bad_signature", "alg_none", "expired", "missing_sub", "missing_exp", "garbage", "nbf_future"],
)
async def test_bad_tokens_get_auth_failed_and_4001(server, case):
    now = time.time()
    claims = {"sub": "alice", "exp": int(now + 300), "channels": ["*"]}
    if case == "bad_signature":
        token = jwt.encode(claims, "another-secret-of-enough-length!", algorithm="HS256")
    elif case == "alg_none":
        token = jwt.encode(claims, None, algorithm="none")
    elif case == "expired":
        token = jwt.encode({**claims, "exp": int(now - 5)}, SECRET, algorithm="HS256")
    elif case == "missing_sub":
        token = jwt.encode({"exp": int(now + 300)}, SECRET, algorithm="HS256")
    elif case == "missing_exp":
        token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    elif case == "nbf_future":
        token = jwt.encode({**claims, "nbf": int(now + 120)}, SECRET, algorithm="HS256")
    else:
        token = "not.a.jwt"
    client = await server.connect(auth=False)
    ref = await client.send("auth", {"token": token})
    err = await client.expect("error", ref=ref)
    assert err["payload"]["code"] == "auth_failed"
    assert token not in json.dumps(err)
    assert await client.closed() == 4001


async def test_rs256_accepted_and_algorithm_confusion_refused(nursery, tmp_path):
    key, pub, path = _rsa_pair(tmp_path)
    srv = await start_server(nursery, tmp_path, jwt_secret=None, jwt_public_key=str(path))
    claims = {"sub": "bob", "exp": int(time.time() + 300), "channels": ["*"]}
    client = await srv.connect(auth=False)
    await client.auth(jwt.encode(claims, key, algorithm="RS256"))
    await client.aclose()
    # HS256 signed with the public key's PEM bytes as the secret: the classic confusion attack.
    import hmac, hashlib, base64  # noqa: E401 - PyJWT refuses to build this token itself

    def b64(b: bytes) -> bytes:
        return base64.urlsafe_b64encode(b).rstrip(b"=")

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(json.dumps(claims).encode())
    forged = (signing + b"." + b64(hmac.new(pub, signing, hashlib.sha256).digest())).decode()
    client = await srv.connect(auth=False)
    ref = await client.send("auth", {"token": forged})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "auth_failed"
    assert await client.closed() == 4001


async def test_es256_public_key(nursery, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    srv = await start_server(nursery, tmp_path, jwt_secret=None, jwt_public_key=str(path))
    client = await srv.connect(auth=False)
    await client.auth(jwt.encode({"sub": "e", "exp": int(time.time() + 60)}, key, algorithm="ES256"))
    await client.aclose()


async def test_audience_and_issuer_enforced_when_configured(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, jwt_audience="mobile", jwt_issuer="https://auth.example")
    for extra, ok in [({"aud": "mobile", "iss": "https://auth.example"}, True), ({"aud": "web", "iss": "https://auth.example"}, False),
                      ({"aud": "mobile", "iss": "https://evil.example"}, False), ({}, False)]:
        client = await srv.connect(auth=False)
        ref = await client.send("auth", {"token": make_token("a", **extra)})
        frame = await client.recv()
        assert (frame["type"] == "auth_ok") is ok, (extra, frame)
        if not ok:
            assert frame["payload"]["code"] == "auth_failed"
            assert await client.closed() == 4001
        else:
            await client.aclose()
        assert frame["ref"] == ref


async def test_refresh_same_sub_new_expiry_other_sub_4003_invalid_keeps_connection(server):
    client = await server.connect("alice", ttl=100)
    ok = await client.auth(make_token("alice", ttl=1000))
    assert abs(ok["payload"]["expiresAt"] - (time.time() + 1000) * 1000) < 5000
    ref = await client.send("auth", {"token": "garbage"})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "auth_failed"
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)  # still open, still authenticated
    ref = await client.send("auth", {"token": make_token("mallory")})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "forbidden"
    assert await client.closed() == 4003


async def test_refresh_withdraws_channels_no_longer_granted(server):
    client = await server.connect("alice", channels=["chat.*", "news.*"])
    await client.subscribe("chat.a")
    await client.subscribe("news.b")
    ref = await client.send("auth", {"token": make_token("alice", channels=["chat.*"])})
    await client.expect("auth_ok", ref=ref)
    frame = await client.expect("unsubscribed")
    assert frame["payload"]["channel"] == "news.b" and frame["payload"]["reason"]
    await server.publish("news.b", {"x": 1})
    await server.publish("chat.a", {"x": 2})
    (ev,) = await client.events(1)
    assert ev["channel"] == "chat.a"
    await client.aclose()


async def test_token_expiring_then_4002_without_refresh(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, token_expiring_lead=1.0)
    client = await srv.connect(auth=False)
    exp = time.time() + 1.6
    await client.auth(jwt.encode({"sub": "a", "exp": exp, "channels": ["*"]}, SECRET, algorithm="HS256"))
    warn = await client.expect("token_expiring")
    assert warn["payload"]["expiresAt"] == int(exp * 1000)
    assert 0 < warn["payload"]["expiresIn"] <= 1000
    err = await client.expect("error")
    assert err["payload"]["code"] == "token_expired"
    assert await client.closed() == 4002


async def test_refresh_after_token_expiring_moves_the_deadline(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, token_expiring_lead=1.0)
    client = await srv.connect(auth=False)
    await client.auth(jwt.encode({"sub": "a", "exp": time.time() + 1.3, "channels": ["*"]}, SECRET, algorithm="HS256"))
    await client.expect("token_expiring")
    await client.auth(make_token("a", ttl=300))
    with trio.move_on_after(1.5):  # past the old exp: nothing may arrive
        frame = await client.recv(timeout=10)
        raise AssertionError(f"unexpected frame after refresh: {frame}")
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)
    await client.aclose()


async def test_bad_frames_get_bad_request_and_connection_stays(server):
    client = await server.connect()
    await client.ws.send_message(b"\x00\x01binary")
    assert (await client.expect("error"))["payload"]["code"] == "bad_request"
    await client.ws.send_message("{not json")
    assert (await client.expect("error"))["payload"]["code"] == "bad_request"
    await client.ws.send_message("[1,2]")
    assert (await client.expect("error"))["payload"]["code"] == "bad_request"
    ref = await client.send("dance")
    err = await client.expect("error", ref=ref)
    assert err["payload"]["code"] == "bad_request" and "unknown frame type" in err["payload"]["message"]
    ref = await client.send("subscribe", {"channel": "a", "lastSeq": "7"})
    err = await client.expect("error", ref=ref)
    assert "lastSeq" in err["payload"]["message"] and err["payload"]["retryable"] is False
    ref = await client.send("publish", {"channel": "a", "event": "nodot", "data": {}})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "bad_request"
    await client.ws.send_message(json.dumps({"type": "ping", "timestamp": 1, "payload": {}}))  # no id
    assert (await client.expect("error"))["payload"]["code"] == "bad_request"
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)
    await client.aclose()


async def test_message_too_big_closes_1009(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, max_message_size=2048)
    client = await srv.connect()
    await client.send("ping", {"pad": "x" * 4096})
    assert await client.closed() == 1009


async def test_wrong_path_404_and_origin_allow_list(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, allowed_origins=("https://app.example",))
    with pytest.raises(ConnectionRejected) as exc:
        async with open_websocket_url(srv.url.replace("/ws", "/other")):
            pass
    assert exc.value.status_code == 404
    with pytest.raises(ConnectionRejected) as exc:
        async with open_websocket_url(srv.url, extra_headers=[("Origin", "https://evil.example")]):
            pass
    assert exc.value.status_code == 403
    async with open_websocket_url(srv.url, extra_headers=[("Origin", "https://app.example")]):
        pass
    async with open_websocket_url(srv.url):  # mobile apps send no Origin
        pass


async def test_query_token_only_when_allowed(nursery, tmp_path, caplog):
    token = make_token("q")
    srv = await start_server(nursery, tmp_path / "a")
    with pytest.raises(ConnectionRejected) as exc:
        async with open_websocket_url(f"{srv.url}?token={token}"):
            pass
    assert exc.value.status_code == 403
    srv2 = await start_server(nursery, tmp_path / "b", allow_query_token=True)
    client = await Client.open(nursery, f"{srv2.url}?token={token}")
    ok = await client.expect("auth_ok")
    assert ok["payload"]["userId"] == "q" and "ref" not in ok
    await client.aclose()
    assert token not in caplog.text


async def _raw_upgrade(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += await trio.to_thread.run_sync(sock.recv, 4096)
    assert buf.startswith(b"HTTP/1.1 101"), buf
    return sock


async def test_heartbeat_drops_a_silent_peer_without_close_handshake(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, heartbeat_interval=0.2, heartbeat_timeout=0.3)
    sock = await _raw_upgrade(srv.info.port)  # never answers pings: a dead phone
    sock.settimeout(WAIT)
    received = b""
    with trio.fail_after(WAIT):
        while True:
            chunk = await trio.to_thread.run_sync(sock.recv, 4096)
            if not chunk:
                break
            received += chunk
    sock.close()
    assert received[:1] == b"\x89"  # it did ping us
    assert b"\x88" not in received  # and closed the TCP connection without a close frame
    with trio.fail_after(WAIT):
        while srv.node.hub.connections:
            await trio.sleep(0.01)
    assert 'code="1006"' in srv.server.metrics.render().decode()


async def test_heartbeat_keeps_a_live_peer(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, heartbeat_interval=0.1, heartbeat_timeout=0.3)
    client = await srv.connect()
    await trio.sleep(0.6)  # several heartbeat rounds, answered by the client library
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)
    connection = next(iter(srv.node.hub.connections.values()))
    assert connection.rtt is not None
    await client.aclose()


async def test_a_failing_connection_task_ends_only_that_connection(server, monkeypatch):
    from wsserver.connection import Connection

    async def broken(self, frame):
        raise RuntimeError("boom")

    monkeypatch.setattr(Connection, "_on_unsubscribe", broken)
    victim = await server.connect("v")
    bystander = await server.connect("b")
    await victim.send("unsubscribe", {"channel": "x"})
    assert await victim.closed() == 1011
    ref = await bystander.send("ping")
    await bystander.expect("pong", ref=ref)
    await bystander.aclose()


async def test_shutdown_closes_clients_with_1001(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path)
    client = await srv.connect()
    srv.server.request_shutdown()
    assert await client.closed() == 1001


async def test_resets_mid_handshake_cost_only_that_connection(server):
    """Phones drop mid-upgrade: an RST right after the request (or after the 101) must not
    disturb the server."""
    import struct

    for after_response in (False, True) * 10:
        sock = socket.create_connection(("127.0.0.1", server.info.port))
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        if after_response:
            await trio.to_thread.run_sync(sock.recv, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        await trio.sleep(0.01)
    client = await server.connect()
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)
    await client.aclose()


async def test_jku_and_x5u_headers_are_never_fetched(server):
    """A token pointing at its own key URL must not make the server fetch anything."""
    hits = []

    async def key_server(stream):
        hits.append(1)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, key_server, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        url = f"http://127.0.0.1:{port}/keys.json"
        for header in ({"jku": url}, {"x5u": url}):
            token = jwt.encode({"sub": "a", "exp": int(time.time() + 60)}, "attacker-key-" + "k" * 30,
                               algorithm="HS256", headers=header)
            client = await server.connect(auth=False)
            ref = await client.send("auth", {"token": token})
            assert (await client.expect("error", ref=ref))["payload"]["code"] == "auth_failed"
            assert await client.closed() == 4001
        nursery.cancel_scope.cancel()
    assert hits == []
