"""The server never negotiates permessage-deflate (RFC 7692), which is why Autobahn's 12.x/13.x
are excluded: an upgrade that offers it is accepted without any extension."""

from __future__ import annotations

import base64
import os
import socket

from tests.support import ServerProcess

OFFERS = (
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover, x-webkit-deflate-frame",
)


def _upgrade(port: int, extensions: str) -> str:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                break
            response += chunk
    return response.decode("latin-1")


def test_permessage_deflate_is_never_negotiated(server_process: ServerProcess):
    for offer in OFFERS:
        response = _upgrade(server_process.port, offer)
        head = response.split("\r\n\r\n", 1)[0].lower()
        assert head.startswith("http/1.1 101"), response
        assert "sec-websocket-extensions" not in head, response
