"""A raw-socket WebSocket client for hostile-input tests: sends frames a real library refuses to
build (reserved bits and opcodes, invalid UTF-8, oversized lengths) and reads the server's frames."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

#: Seconds any single step may take.
STEP_TIMEOUT = 5.0


def upgrade_request(port: int, path: str = "/ws", *, key: str | None = None, version: str = "13",
                    extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode() if key is None else key
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


def read_until_closed(sock: socket.socket, timeout: float = STEP_TIMEOUT) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; (bytes, closed) — closed is False when the
    deadline passed first. A reset counts as closed."""
    data = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


class RawClient:
    """One upgraded connection on a plain socket; client frames are masked as RFC 6455 requires."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
        self.sock.sendall(upgrade_request(port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += chunk
        status, _, self._buffer = head.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {status!r}")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
                   length: int | None = None) -> None:
        """Sends one frame; ``length`` overrides the declared payload length (a lie)."""
        n = len(payload) if length is None else length
        head = bytes(((0x80 if fin else 0) | (rsv & 7) << 4 | opcode,))
        if n < 126:
            head += bytes((0x80 | n,))
        elif n < 65536:
            head += struct.pack("!BH", 0x80 | 126, n)
        else:
            head += struct.pack("!BQ", 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(0x1, text.encode() if isinstance(text, str) else text)

    def recv_frame(self, timeout: float = STEP_TIMEOUT) -> tuple[int, bytes] | None:
        """Next server frame as (opcode, payload); None when the server closed the TCP connection."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the server in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self._buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        n, offset = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, offset = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, offset = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < offset + n:
            return None
        self._buffer = buf[offset + n:]
        return buf[0] & 0x0F, buf[offset:offset + n]

    def close_code(self, timeout: float = STEP_TIMEOUT) -> int | None:
        """Reads until the server's close frame (its code) or the end of TCP (None)."""
        while (frame := self.recv_frame(timeout)) is not None:
            opcode, payload = frame
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        return None
