"""A raw-socket probe: clients that vanish (RST) right after sending their WebSocket upgrade
request, as phones do when the radio drops mid-handshake. The server must shrug it off."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import urllib.error
import urllib.request

from tests.support import ServerProcess


def reset_during_handshake(server: ServerProcess, times: int = 20) -> bool:
    """Sends ``times`` upgrade requests, each followed at once by an RST; True if the server
    still answers /healthz afterwards."""
    for _ in range(times):
        try:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
        except OSError:
            return False
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        time.sleep(0.02)
    try:
        with urllib.request.urlopen(f"{server.api_url}/healthz", timeout=2) as answer:
            return answer.status == 200 and server.proc is not None and server.proc.poll() is None
    except (OSError, urllib.error.URLError):
        return False
