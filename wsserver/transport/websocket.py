"""One server-side WebSocket connection after its handshake: wsproto's frame protocol over a Trio
stream, read in the connection's own task and written through the connection's one write path.
It implements ``transport.base.Transport``.

Why not trio-websocket's connection object here (it served the first wave): it runs a reader task
and a message channel per connection and keeps three events, a lock and the handshake for the
connection's life — 12.6 KiB of an idle connection's 24 (bench/idle_profile.py) — and writing
pre-framed shared bytes without a task switch meant reaching into its private attributes. wsproto
is the protocol engine under both; this is the ~200 lines between it and the socket, public APIs
only: reads happen in ``receive()``, called by the connection's own task; writes are vectored
``os.writev`` on the socket's file descriptor (plain TCP) or ``send_all`` (TLS).

Control frames the protocol itself must send (a pong, the answer to a close, the close for a
protocol error) go through ``on_control``, which the connection points at its own write path, so
they never land inside a frame of another writer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Final

import trio
from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError

from wsserver.limits import Admission
from wsserver.transport.base import CloseReason, ConnectionClosed, PongWaiter

log = logging.getLogger("wsserver.transport")

#: Bytes read from the socket at a time.
RECEIVE_BUFFER: Final = 16 * 1024
#: Seconds we wait for the peer's close frame after sending ours.
CLOSE_HANDSHAKE_TIMEOUT: Final = 2.0
#: Most buffers one writev() takes (Linux's UIO_MAXIOV).
IOV_MAX: Final = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
#: Bytes joined per write on a TLS connection (the SSL stream takes one buffer at a time).
TLS_WRITE_CHUNK: Final = 64 * 1024

_MESSAGE_TOO_BIG: Final = 1009


class WsConnection:
    """Implements ``Transport``. ``on_control(framed)`` must write ``framed`` in order with the
    connection's other frames (the connection sets it; until then a control frame is written at
    once, which is only ever the case before the connection's tasks start)."""

    __slots__ = (
        "_stream", "_fd", "_ws", "remote", "user", "_admission", "_max_size", "_parts", "_size", "_close",
        "_pings", "_writing", "on_control", "_pending_control",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: FrameConnection,
        *,
        remote: str,
        max_message_size: int,
        admission: Admission | None = None,
    ) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._ws = ws
        self.remote = remote
        self.user: str | None = None
        self._admission = admission
        self._max_size = max_message_size
        self._parts: list[str | bytes] = []
        self._size = 0
        self._close: CloseReason | None = None
        self._pings: dict[bytes, PongWaiter] | None = None
        self._writing = False
        self.on_control: Callable[[bytes], None] | None = None
        self._pending_control: list[bytes] = []  # without on_control: written by the next receive or write

    def admit_user(self, user_id: str) -> bool:
        """Counts this connection against ``user_id``'s limit; False when it is over it."""
        if self._admission is None or self.user is not None:
            return True
        if not self._admission.admit_user(user_id):
            return False
        self.user = user_id
        return True

    @property
    def close_code(self) -> int | None:
        return None if self._close is None else self._close.code

    # ------------------------------------------------------------------ reading

    async def receive(self) -> str | bytes:
        """The next message; raises ConnectionClosed when the connection is gone (with the
        peer's close code, 1006 for a lost connection, 1009 for a message over the limit, the
        protocol error's code for a malformed frame)."""
        ws = self._ws
        while True:
            if self._close is not None:
                raise ConnectionClosed(self._close)
            for event in ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    self._size += len(event.data)
                    if self._size > self._max_size:
                        await self._fail(_MESSAGE_TOO_BIG, f"message larger than {self._max_size} bytes")
                        raise ConnectionClosed(self._close)
                    if event.message_finished:
                        if self._parts:
                            self._parts.append(event.data)
                            message = ("" if isinstance(event, TextMessage) else b"").join(self._parts)  # type: ignore[arg-type]
                            self._parts = []
                        else:
                            message = event.data
                        self._size = 0
                        return message
                    self._parts.append(event.data)
                elif isinstance(event, Ping):
                    self._control(ws.send(event.response()))
                elif isinstance(event, Pong):
                    self._pong(bytes(event.payload))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:  # the peer closed: answer and end
                        self._control(ws.send(event.response()))
                        self._close = CloseReason(event.code, event.reason)
                        if self._pending_control:  # a bare transport: the answer goes out before the end
                            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                                await self.send_frames([])
                    else:  # a malformed frame (wsproto reports it as a close with the error's code)
                        await self._fail(event.code, event.reason or "protocol error")
                    raise ConnectionClosed(self._close)
            if self._pending_control and not self._writing:
                await self.send_frames([])  # a pong or close answer that did not fit at once
            try:
                data = await self._stream.receive_some(RECEIVE_BUFFER)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                if self._close is None:
                    self._close = CloseReason(1006, "connection lost")
                raise ConnectionClosed(self._close)
            ws.receive_data(data)

    def _pong(self, payload: bytes) -> None:
        pings = self._pings
        if not pings or payload not in pings:
            return  # unsolicited: a pong answers nothing we asked
        for key in list(pings):  # the matching ping and every earlier one are answered
            pings.pop(key).set()
            if key == payload:
                break

    async def _fail(self, code: int, reason: str) -> None:
        """Ends the connection from our side on an error of the peer's: a Close frame with the
        code (RFC 6455 §7.1.7), then the TCP connection is cut."""
        self._close = CloseReason(code, reason[:120])
        try:
            framed = self._ws.send(CloseConnection(code=code, reason=reason[:120]))
        except LocalProtocolError:
            framed = b""
        if framed:
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                try:
                    await self.send_frames([framed])
                except ConnectionClosed:
                    pass
        await self.abort()

    def _control(self, framed: bytes) -> None:
        if not framed:
            return
        if self.on_control is not None:
            self.on_control(framed)
            return
        # No connection write path (a bare transport, e.g. the conformance echo app): write now
        # what the socket takes; the rest goes ahead of the next write.
        sent = 0 if self._pending_control else self.try_write([framed]) or 0
        if sent < len(framed):
            self._pending_control.append(framed[sent:])

    # ------------------------------------------------------------------ writing

    def write_now(self, data: bytes) -> int | None:
        """``try_write`` of one buffer (the live path's whole frame): one ``write`` syscall."""
        if self._fd < 0 or self._writing or self._close is not None:
            return None
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return None

    def try_write(self, buffers: list) -> int | None:
        """Writes what the socket takes right now, without waiting and without a task switch;
        None: cannot be written directly now (TLS, closed, or an awaited write in progress)."""
        if self._fd < 0 or self._writing or self._close is not None:
            return None
        try:
            return os.writev(self._fd, buffers)
        except BlockingIOError:
            return 0
        except OSError:
            return None  # reset or broken pipe: the awaited write reports it

    async def send_frames(self, frames: list) -> None:
        """Writes already-framed bytes in order, waiting for the socket as needed; a partly
        written frame continues from a memoryview (the shared frame bytes are never copied)."""
        if self._writing:
            raise RuntimeError("one writer at a time")
        if self._pending_control:
            frames = [*self._pending_control, *frames]
            self._pending_control = []
        self._writing = True
        try:
            if self._fd < 0:
                for chunk in _chunks(frames, TLS_WRITE_CHUNK):
                    await self._stream.send_all(chunk)
                return
            pending: list = frames
            waited = False
            while pending:
                try:
                    sent = os.writev(self._fd, pending[:IOV_MAX] if len(pending) > IOV_MAX else pending)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    raise trio.BrokenResourceError(str(exc)) from None
                if sent:
                    i = 0
                    while i < len(pending) and sent >= len(pending[i]):
                        sent -= len(pending[i])
                        i += 1
                    pending = pending[i:]
                    if sent:
                        pending[0] = memoryview(pending[0])[sent:]
                if pending:
                    await trio.lowlevel.wait_writable(self._fd)
                    waited = True
            if not waited:
                await trio.lowlevel.checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            if self._close is None:
                self._close = CloseReason(1006, "connection lost")
            raise ConnectionClosed(self._close) from None
        finally:
            self._writing = False

    def ping_frame(self, waiter: PongWaiter) -> bytes:
        """A pre-framed ping with a fresh 8-byte payload; ``waiter`` is set by its pong."""
        if self._close is not None:
            raise ConnectionClosed(self._close)
        if self._pings is None:
            self._pings = {}
        payload = os.urandom(8)
        self._pings[payload] = waiter
        return self._ws.send(Ping(payload=payload))

    # ------------------------------------------------------------------ closing

    async def close(self, code: int, reason: str) -> None:
        """Close handshake, bounded: our Close frame, then the peer's (read and dropped) or the
        timeout; the TCP connection is closed either way."""
        with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT) as scope:
            scope.shield = True
            if self._ws.state is ConnectionState.OPEN:
                self._close = CloseReason(code, reason[:120])
                try:
                    await self.send_frames([self._ws.send(CloseConnection(code=code, reason=reason[:120]))])
                    while self._ws.state is not ConnectionState.CLOSED:
                        data = await self._stream.receive_some(RECEIVE_BUFFER)
                        if not data:
                            break
                        self._ws.receive_data(data)
                        for _event in self._ws.events():
                            pass  # messages after our close are dropped; the peer's close ends the loop
                except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                    pass
        await self.abort()

    async def abort(self) -> None:
        """Closes the TCP connection at once, without a close handshake (a dead peer)."""
        if self._close is None:
            self._close = CloseReason(1006, "aborted")
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)


def _chunks(frames: list, size: int):
    """Joins consecutive frames into buffers of about ``size`` bytes (a larger frame alone)."""
    chunk: list = []
    total = 0
    for frame in frames:
        if chunk and total + len(frame) > size:
            yield b"".join(chunk)
            chunk, total = [], 0
        chunk.append(frame)
        total += len(frame)
    if chunk:
        yield chunk[0] if len(chunk) == 1 else b"".join(chunk)
