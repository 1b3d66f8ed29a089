"""Malformed HTTP upgrade requests against the live server: each is refused (4xx) or closed,
slowloris clients are cut at the 10 s handshake deadline, and a bystander is served throughout."""

from __future__ import annotations

import socket
import time

import pytest

from tests.hardening.rawws import read_until_closed, upgrade_request
from tests.hardening.test_frames_hostile import authed, ping_pong
from wsserver.transport import HANDSHAKE_TIMEOUT


def _status(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), response[:200]
    return int(line.split()[1])


def _send(port: int, raw: bytes) -> tuple[bytes, bool]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it finished reading: what counts is what it answered
        return read_until_closed(sock)


def test_each_malformed_upgrade_is_refused(live_server):
    port = live_server.port
    plain = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    cases = {
        "missing Sec-WebSocket-Key": ((plain + "\r\n").encode(), {400}),
        "huge header (100 KiB)": (upgrade_request(port, extra=f"X-Big: {'a' * 100_000}\r\n"), {400, 431}),
        "5000 headers": (upgrade_request(port, extra="".join(f"X-H{i}: v\r\n" for i in range(5000))), {400, 431}),
        "TLS hello on the plain port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4, {400}),
        "garbage line": (b"GARBAGE NOT HTTP\r\n\r\n", {400}),
        "POST": (b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", {400, 405}),
        "plain GET": (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", {400, 426}),
        "NUL bytes in the request line": (b"GET /ws\x00\x00 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    }
    with authed(port) as bystander:
        for name, (raw, statuses) in cases.items():
            response, closed = _send(port, raw)
            assert _status(response) in statuses, (name, response[:300])
            assert closed, f"{name}: connection left open after the refusal"
            ping_pong(bystander)
        # Wrong version: 426 naming the version we speak (RFC 6455 4.4).
        response, _ = _send(port, upgrade_request(port, version="8"))
        assert _status(response) == 426 and b"sec-websocket-version: 13" in response.lower(), response
        ping_pong(bystander)
    assert live_server.proc.poll() is None


REFUSED_WITH_A_BODY = {"wrong path": ("/not-ws", 404), "query-string token (disabled)": ("/ws?token=abc", 403)}



@pytest.mark.parametrize("name", sorted(REFUSED_WITH_A_BODY))
def test_refusal_with_a_body_answers_its_status(live_server, name):
    path, status = REFUSED_WITH_A_BODY[name]
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        sock.sendall(upgrade_request(live_server.port, path))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            assert chunk, response
            response += chunk
    assert _status(response) == status, response


@pytest.mark.parametrize("name", sorted(REFUSED_WITH_A_BODY))
def test_refusal_with_a_body_closes_the_connection(live_server, name):
    path, status = REFUSED_WITH_A_BODY[name]
    response, closed = _send(live_server.port, upgrade_request(live_server.port, path))
    assert _status(response) == status, response
    assert closed, f"{name}: still open 5 s after the refusal"


@pytest.mark.slow
def test_slowloris_upgrades_are_cut_at_the_handshake_deadline(live_server):
    """20 clients trickle their upgrade request a byte at a time; each is closed at the
    handshake deadline, while a bystander and a newcomer are served as usual."""
    port, count = live_server.port, 20
    request = upgrade_request(port, extra="X-Slow: " + "s" * 2000 + "\r\n")
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    for sock in socks:
        sock.setblocking(False)
    open_socks, sent, start = set(range(count)), 0, time.monotonic()
    limit = start + HANDSHAKE_TIMEOUT + 10
    with authed(port) as bystander:
        while open_socks and time.monotonic() < limit:
            for i in list(open_socks):
                try:
                    if socks[i].recv(4096) == b"":
                        open_socks.discard(i)
                        continue
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    open_socks.discard(i)
                    continue
                try:
                    socks[i].send(request[sent:sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    open_socks.discard(i)
            sent += 1
            ping_pong(bystander)  # also paces the trickle
            if sent % 20 == 0:
                with authed(port) as newcomer:
                    ping_pong(newcomer)
            time.sleep(0.2)
        elapsed = time.monotonic() - start
    for sock in socks:
        sock.close()
    assert not open_socks, f"{len(open_socks)} slowloris connections still open after {elapsed:.1f}s"
    assert sent < len(request), "the trickle finished its request: the test proved nothing"
