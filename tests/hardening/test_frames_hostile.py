"""Hostile WebSocket frames against the live server, built by hand on a raw socket: oversized
messages (close 1009), protocol violations and invalid UTF-8 (the connection is failed), binary
frames and ping floods (answered); a bystander is served throughout."""

from __future__ import annotations

import json
import struct
import uuid

import pytest

from tests.hardening.rawws import RawClient, read_until_closed
from tests.support import make_token

MAX_MESSAGE_SIZE = 65536  # the default the live_server fixture runs with

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9



def authed(port: int) -> RawClient:
    client = RawClient(port)
    client.send_text(json.dumps({"type": "auth", "id": str(uuid.uuid4()), "timestamp": 0,
                                 "payload": {"token": make_token("raw")}}))
    opcode, payload = client.recv_frame()
    assert opcode == OP_TEXT and json.loads(payload)["type"] == "auth_ok", payload
    return client


def ping_pong(client: RawClient) -> None:
    ref = str(uuid.uuid4())
    client.send_text(json.dumps({"type": "ping", "id": ref, "timestamp": 0, "payload": {}}))
    while True:
        frame = client.recv_frame()
        assert frame is not None, "bystander lost its connection"
        if frame[0] == OP_TEXT and json.loads(frame[1]).get("ref") == ref:
            return


@pytest.fixture
def bystander(live_server):
    with authed(live_server.port) as client:
        yield client
        ping_pong(client)  # still served after the hostile client


# --------------------------------------------------------------------------- too big: 1009

@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_message_above_max_size_closes_1009(live_server, bystander, opcode):
    with authed(live_server.port) as client:
        client.send_frame(opcode, b"x" * (MAX_MESSAGE_SIZE + 1))
        assert client.close_code() == 1009


def test_fragmented_message_above_max_size_closes_1009(live_server, bystander):
    with authed(live_server.port) as client:
        chunk = b"a" * 16384
        client.send_frame(OP_TEXT, chunk, fin=False)
        for _ in range(4):
            client.send_frame(OP_CONT, chunk, fin=False)
        assert client.close_code() == 1009


def test_declared_huge_length_closes_1009_once_the_data_exceeds_the_limit(live_server, bystander):
    with authed(live_server.port) as client:
        header = bytes((0x81, 0x80 | 127)) + struct.pack("!Q", 2**62) + b"\x00\x00\x00\x00"
        client.sock.sendall(header + b"b" * (MAX_MESSAGE_SIZE + 1024))
        assert client.close_code() == 1009


def test_message_at_max_size_is_answered(live_server, bystander):
    """The limit is the limit: a frame of exactly max_message_size bytes gets a JSON answer."""
    with authed(live_server.port) as client:
        body = {"type": "ping", "id": "big", "timestamp": 0, "payload": {}, "pad": ""}
        pad = MAX_MESSAGE_SIZE - len(json.dumps(body, separators=(",", ":")))
        body["pad"] = "p" * pad
        client.send_text(json.dumps(body, separators=(",", ":")))
        opcode, payload = client.recv_frame()
        assert json.loads(payload)["type"] == "pong"


# --------------------------------------------------------------------------- protocol violations

VIOLATIONS = {
    "rsv1 without extension": dict(opcode=OP_TEXT, payload=b'{"type":"ping"}', rsv=4),
    "reserved opcode 3": dict(opcode=0x3, payload=b"x"),
    "reserved control opcode 11": dict(opcode=0xB, payload=b"x"),
    "fragmented ping": dict(opcode=OP_PING, payload=b"x", fin=False),
    "ping above 125 bytes": dict(opcode=OP_PING, payload=b"x" * 126),
    "continuation with nothing to continue": dict(opcode=OP_CONT, payload=b"x"),
    "close with reserved code 1004": dict(opcode=OP_CLOSE, payload=struct.pack("!H", 1004)),
    "close with a 1-byte payload": dict(opcode=OP_CLOSE, payload=b"\x03"),
}
INVALID_UTF8 = [b"\xff", b'{"type":"ping","id":"\xc3\x28"}', b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]


def _expected_code(name: str) -> int:
    return 1007 if name.startswith("utf8") else 1002


CASES = {**VIOLATIONS, **{f"utf8 {p!r}": dict(opcode=OP_TEXT, payload=p) for p in INVALID_UTF8}}


@pytest.mark.parametrize("name", sorted(CASES))
def test_protocol_violation_fails_the_connection(live_server, bystander, name):
    with authed(live_server.port) as client:
        client.send_frame(**CASES[name])
        _, closed = read_until_closed(client.sock)
        assert closed, f"{name}: the server kept the connection open"


@pytest.mark.parametrize("name", sorted(CASES))
def test_protocol_violation_is_answered_with_its_close_code(live_server, name):
    with authed(live_server.port) as client:
        client.send_frame(**CASES[name])
        assert client.close_code() == _expected_code(name)


def test_unmasked_client_frame_fails_the_connection(live_server, bystander):
    with authed(live_server.port) as client:
        client.sock.sendall(bytes((0x81, 2)) + b"{}")  # RFC 6455 5.1: clients MUST mask
        _, closed = read_until_closed(client.sock)
        assert closed


# --------------------------------------------------------------------------- answered, kept open

def test_binary_frame_gets_bad_request_and_the_connection_stays(live_server, bystander):
    with authed(live_server.port) as client:
        client.send_frame(OP_BINARY, bytes(range(256)))
        opcode, payload = client.recv_frame()
        error = json.loads(payload)
        assert error["type"] == "error" and error["payload"]["code"] == "bad_request", error
        ping_pong(client)


def test_ping_burst_is_answered_with_pongs(live_server, bystander):
    with authed(live_server.port) as client:
        for i in range(200):
            client.send_frame(OP_PING, struct.pack("!I", i))
        pongs = []
        while len(pongs) < 200:
            frame = client.recv_frame()
            assert frame is not None
            if frame[0] == 0xA:
                pongs.append(struct.unpack("!I", frame[1])[0])
        assert pongs == list(range(200))
        ping_pong(client)


def test_fragmented_text_message_is_reassembled(live_server, bystander):
    with authed(live_server.port) as client:
        text = json.dumps({"type": "ping", "id": "frag", "timestamp": 0, "payload": {}}).encode()
        client.send_frame(OP_TEXT, text[:5], fin=False)
        client.send_frame(OP_PING, b"interleaved")  # control frames may come between fragments
        client.send_frame(OP_CONT, text[5:11], fin=False)
        client.send_frame(OP_CONT, text[11:])
        seen = []
        while not any(op == OP_TEXT for op, _ in seen):
            seen.append(client.recv_frame())
        assert (0xA, b"interleaved") in seen
        assert json.loads(seen[-1][1])["ref"] == "frag"
