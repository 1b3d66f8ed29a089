"""The load generator's client connection: wsproto for the HTTP upgrade, then a minimal frame
walker over the raw stream, so that counting 100k deliveries/s costs the generator little.

Why a hand-written frame walker: wsproto's event machinery costs ~15–25 µs per received message
in Python, which would make the generator, not the server under test, the bottleneck at the
rates measured here. Server→client frames are unmasked and unfragmented in practice; the walker
reads the RFC 6455 §5.2 header, answers pings (with a zero mask key, which leaves the payload
as is), and hands each text message's bytes to the caller. It speaks three dialects on top:
``wsserver`` (our JSON protocol), ``plain`` (broadcast peers) and ``socketio`` (Engine.IO 4).
"""

from __future__ import annotations

import json
import re
import struct
import time
import uuid
from collections import deque
from typing import Final

import trio
import wsproto
from wsproto.events import AcceptConnection, Request, TextMessage

PATHS: Final = {"wsserver": "/ws", "plain": "/", "socketio": "/socket.io/?EIO=4&transport=websocket"}
EVENT_TYPE: Final = "b.m"
_T: Final = re.compile(rb'"t":\s*([0-9.]+)')
_ZERO_MASK: Final = b"\x00\x00\x00\x00"


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame with a zero mask key (RFC 6455 allows any key; zero keeps the bytes)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + _ZERO_MASK + payload


def sent_time(payload: bytes) -> float | None:
    """The publisher's ``time.monotonic()`` carried as ``"t"`` in an event's data."""
    m = _T.search(payload)
    return float(m.group(1)) if m else None


def is_data(kind: str, payload: bytes) -> bool:
    """Whether a text message is a delivered event (not a reply, ack or Engine.IO ping)."""
    if kind == "wsserver":
        return payload.startswith(b'{"type":"b.m"')
    if kind == "socketio":
        return payload.startswith(b'42')
    return True


class Conn:
    """One client connection after the upgrade; ``messages()`` yields text payloads in order."""

    def __init__(self, kind: str, stream: trio.SocketStream) -> None:
        self.kind = kind
        self.stream = stream
        self._buf = b""
        self._frag: list[bytes] = []
        self.pending: deque[bytes] = deque()
        self.closed_code: int | None = None

    @classmethod
    async def connect(cls, kind: str, host: str, port: int) -> Conn:
        stream = await trio.open_tcp_stream(host, port)
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target=PATHS[kind])))
        conn = cls(kind, stream)
        accepted = False
        while not accepted:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = True
                elif isinstance(event, TextMessage):
                    conn.pending.append(event.data.encode())
                else:
                    raise ConnectionError(f"handshake refused: {event!r}")
        if kind == "socketio":
            while not conn.pending:  # Engine.IO open packet `0{...}` (may share wsproto's read)
                ws.receive_data(await stream.receive_some(65536))
                conn.pending.extend(e.data.encode() for e in ws.events() if isinstance(e, TextMessage))
            opened = conn.pending.popleft()
            assert opened.startswith(b"0"), opened
            await conn.send(b"40")
            reply = await conn.recv()
            assert reply.startswith(b"40"), reply
        return conn

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(client_frame(0x1, payload))

    def feed(self, data: bytes) -> bytes:
        """Walks the frames in ``data``; queues text payloads; returns bytes to send back."""
        buf = self._buf + data if self._buf else data
        out = b""
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if end - pos < head + n:
                break
            payload = buf[pos + head:pos + head + n]
            pos += head + n
            opcode = b0 & 0x0F
            if opcode == 0x1 or opcode == 0x0:
                if b0 & 0x80:
                    if self._frag:
                        self._frag.append(payload)
                        payload = b"".join(self._frag)
                        self._frag = []
                    if self.kind == "socketio" and payload == b"2":
                        out += client_frame(0x1, b"3")
                    else:
                        self.pending.append(payload)
                else:
                    self._frag.append(payload)
            elif opcode == 0x9:
                out += client_frame(0xA, payload)
            elif opcode == 0x8:
                self.closed_code = struct.unpack("!H", payload[:2])[0] if n >= 2 else 1005
        self._buf = buf[pos:]
        return out

    async def fill(self) -> bool:
        """Reads once from the socket into ``pending``; False when the peer closed (or reset)."""
        try:
            data = await self.stream.receive_some(262144)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        if not data:
            return False
        out = self.feed(data)
        if out:
            await self.stream.send_all(out)
        return self.closed_code is None

    async def recv(self) -> bytes:
        while not self.pending:
            if not await self.fill():
                raise ConnectionError(f"closed ({self.closed_code})")
        return self.pending.popleft()

    async def recv_json(self) -> dict:
        while True:
            msg = await self.recv()
            if self.kind != "socketio":
                return json.loads(msg)

    # -- the wsserver protocol ------------------------------------------------------------------

    async def wsserver_request(self, type_: str, payload: dict) -> None:
        await self.send(envelope(type_, payload))

    async def wsserver_setup(self, token: str, channels: list[str], last_seq: int | None = None) -> list[dict]:
        """auth, then one subscribe per channel; returns the ``subscribed`` payloads. Events that
        follow a ``subscribed`` (replay) stay in ``pending``, in order."""
        await self.wsserver_request("auth", {"token": token})
        for channel in channels:
            sub: dict = {"channel": channel}
            if last_seq is not None:
                sub["lastSeq"] = last_seq
            await self.wsserver_request("subscribe", sub)
        ok = json.loads(await self.recv())
        assert ok["type"] == "auth_ok", ok
        answers = []
        kept: list[bytes] = []
        while len(answers) < len(channels):
            msg = await self.recv()
            if msg.startswith(b'{"type":"subscribed"'):
                answers.append(json.loads(msg)["payload"])
            elif msg.startswith(b'{"type":"error"'):
                raise RuntimeError(msg.decode())
            else:
                kept.append(msg)
        self.pending.extendleft(reversed(kept))
        return answers

    async def socketio_join(self, rooms: list[str]) -> None:
        await self.send(b'420["join",' + json.dumps(rooms).encode() + b"]")
        while True:
            msg = await self.recv()
            if msg.startswith(b"430"):
                return

    async def aclose(self) -> None:
        with trio.move_on_after(1):
            await self.stream.aclose()


def envelope(type_: str, payload: dict) -> bytes:
    return json.dumps(
        {"type": type_, "id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "payload": payload},
        separators=(",", ":"),
    ).encode()


def publish_message(kind: str, channel: str, *, ack_id: int | None = None, pad: str = "",
                    t: float | None = None) -> bytes:
    """One published event carrying its send time ``t`` (default: now, ``time.monotonic()``, one
    clock for every process); ``ack_id`` asks a Socket.IO peer to acknowledge."""
    data = {"t": round(time.monotonic() if t is None else t, 6), "pad": pad}
    if kind == "wsserver":
        return envelope("publish", {"channel": channel, "event": EVENT_TYPE, "data": data})
    if kind == "socketio":
        if ack_id is None:
            return b'42["m",' + json.dumps(data).encode() + b"]"
        data["room"] = channel
        return b"42" + str(ack_id).encode() + b'["p",' + json.dumps(data).encode() + b"]"
    return json.dumps(data).encode()


def is_ack(kind: str, payload: bytes) -> bool:
    if kind == "wsserver":
        return payload.startswith(b'{"type":"published"')
    if kind == "socketio":
        return payload.startswith(b"43")
    return False


class HttpPublisher:
    """A backend publishing over wsserver's HTTP API: one keep-alive HTTP/1.1 connection, one
    request at a time (each POST waits for its answer, which comes once the event is durable and
    handed to the fan-out), the request bytes built by hand so the generator stays cheap."""

    def __init__(self, stream: trio.SocketStream, host: str, port: int, api_key: str) -> None:
        self.stream = stream
        self.host, self.port = host, port
        self.head = (f"POST /api/v1/publish HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.buffer = b""

    @classmethod
    async def connect(cls, host: str, port: int, api_key: str) -> HttpPublisher:
        return cls(await trio.open_tcp_stream(host, port), host, port, api_key)

    async def publish(self, channel: str, *, pad: str = "", t: float | None = None) -> int:
        """POSTs one event and returns the HTTP status once the answer arrived."""
        data = {"t": round(time.monotonic() if t is None else t, 6), "pad": pad}
        body = json.dumps({"channel": channel, "event": EVENT_TYPE, "data": data}).encode()
        await self.stream.send_all(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise trio.BrokenResourceError("the API closed the connection")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while len(rest) < length:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise trio.BrokenResourceError("the API closed the connection")
            rest += chunk
        self.buffer = rest[length:]
        if re.search(rb"(?i)\r\nconnection:\s*close", head):  # e.g. the server's keep-alive request limit
            await self.stream.aclose()
            self.stream, self.buffer = await trio.open_tcp_stream(self.host, self.port), b""
        return int(head.split(b" ", 2)[1])

    async def aclose(self) -> None:
        await self.stream.aclose()

