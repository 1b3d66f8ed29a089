"""An in-memory ``Transport``: the server side of a connection whose client is the test itself.
No sockets, no real time: with Trio's MockClock the heartbeat, auth timeout and token deadlines
of a connection run in virtual time (tests/wsserver/test_connection_layer.py).

The "socket" takes ``capacity`` bytes that the client has not read yet; past that ``try_write``
writes part of a frame or nothing and ``send_frames`` waits, exactly like a full kernel buffer,
so the connection's direct-write, partial-write and writer paths all run here.
"""

from __future__ import annotations

import struct
from collections import deque

import orjson
import trio

from wsserver.transport.base import CloseReason, ConnectionClosed, PongWaiter


class MemoryTransport:
    """Implements ``wsserver.transport.Transport``; the ``client_*`` methods are the test's side."""

    def __init__(self, *, capacity: int = 1 << 20, remote: str = "memory:1", answer_pings: bool = True) -> None:
        self.remote = remote
        self.user: str | None = None
        self.on_control = None  # the test's client answers pings itself
        self.capacity = capacity
        self.answer_pings = answer_pings
        self.users_admitted: list[str] = []
        self._to_server: deque[str | bytes] = deque()
        self._to_server_lot = trio.lowlevel.ParkingLot()
        self._wire = bytearray()  # what the server wrote and the client has not read
        self._wire_lot = trio.lowlevel.ParkingLot()  # the client waits for bytes, the server for room
        self._pings: dict[bytes, PongWaiter] = {}
        self._close: CloseReason | None = None  # set once either side closed
        self.closed_by_server: tuple[int, str] | None = None
        self.aborted = False
        self.writes = 0

    # ------------------------------------------------------------------ the server's side

    def admit_user(self, user_id: str) -> bool:
        self.user = user_id
        self.users_admitted.append(user_id)
        return True

    async def receive(self) -> str | bytes:
        while not self._to_server:
            if self._close is not None:
                raise ConnectionClosed(self._close)
            await self._to_server_lot.park()
        return self._to_server.popleft()

    def write_now(self, data: bytes) -> int | None:
        return self.try_write([data])

    def try_write(self, buffers: list) -> int | None:
        if self._close is not None:
            return None
        room = self.capacity - len(self._wire)
        taken = 0
        for buf in buffers:
            if room <= 0:
                break
            part = bytes(buf[:room])
            self._wire += part
            room -= len(part)
            taken += len(part)
        if taken:
            self.writes += 1
            self._wire_lot.unpark_all()
        return taken

    async def send_frames(self, frames: list) -> None:
        pending = [memoryview(bytes(f)) for f in frames]
        while pending:
            if self._close is not None:
                raise ConnectionClosed(self._close)
            sent = self.try_write(pending)
            while sent and pending:
                if sent >= len(pending[0]):
                    sent -= len(pending.pop(0))
                else:
                    pending[0] = pending[0][sent:]
                    sent = 0
            if pending:
                await self._wire_lot.park()
        await trio.lowlevel.checkpoint()

    def ping_frame(self, waiter: PongWaiter) -> bytes:
        payload = struct.pack("!Q", len(self._pings) + 1)
        self._pings[payload] = waiter
        return b"\x89\x08" + payload

    @property
    def close_code(self) -> int | None:
        return None if self._close is None else self._close.code

    async def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self.closed_by_server = (code, reason)
            self._close = CloseReason(code, reason)
        self._wake()
        await trio.lowlevel.checkpoint()

    async def abort(self) -> None:
        if self._close is None:
            self.aborted = True
            self._close = CloseReason(1006, "aborted")
        self._wake()
        await trio.lowlevel.checkpoint()

    def _wake(self) -> None:
        self._to_server_lot.unpark_all()
        self._wire_lot.unpark_all()

    # ------------------------------------------------------------------ the client's side (the test)

    def client_send(self, message: str | bytes | dict) -> None:
        """Delivers a message to the server (a dict is sent as JSON text)."""
        if isinstance(message, dict):
            message = orjson.dumps(message).decode()
        self._to_server.append(message)
        self._to_server_lot.unpark()

    def client_close(self, code: int = 1000) -> None:
        """The client closes (or vanishes, with 1006)."""
        if self._close is None:
            self._close = CloseReason(code, "client closed")
        self._wake()

    def client_buffered(self) -> int:
        """Bytes written by the server and not read by the client yet."""
        return len(self._wire)

    async def client_receive(self) -> dict:
        """The next text frame the server wrote, parsed as JSON (pings are answered, when
        ``answer_pings``, and skipped). Raises ConnectionClosed once closed and drained."""
        while True:
            frame = self._take_frame()
            if frame is None:
                if self._close is not None:
                    raise ConnectionClosed(self._close)
                await self._wire_lot.park()
                continue
            opcode, payload = frame
            if opcode == 0x9:
                if self.answer_pings and payload in self._pings:
                    self._pings.pop(payload).set()
                continue
            return orjson.loads(payload)

    def client_pong_all(self) -> None:
        """Answers every ping in flight now."""
        for waiter in self._pings.values():
            waiter.set()
        self._pings.clear()

    def _take_frame(self) -> tuple[int, bytes] | None:
        wire = self._wire
        if len(wire) < 2:
            return None
        opcode, length, at = wire[0] & 0x0F, wire[1] & 0x7F, 2
        if length == 126:
            if len(wire) < 4:
                return None
            length, at = struct.unpack("!H", wire[2:4])[0], 4
        elif length == 127:
            if len(wire) < 10:
                return None
            length, at = struct.unpack("!Q", wire[2:10])[0], 10
        if len(wire) < at + length:
            return None
        payload = bytes(wire[at : at + length])
        del wire[: at + length]
        self._wire_lot.unpark_all()  # room for a waiting writer
        return opcode, payload
