"""The WebSocket transport: trio-websocket listeners, the handshake policy (path `/ws`, Origin
allow-list, `?token=`), and a connection adapter that writes pre-framed bytes.

Why pre-framed bytes: server→client frames are unmasked, so a channel event's WebSocket frame is
the same bytes for every subscriber (``wsserver.framing``). Each connection's writer hands its
queued frames to the socket in one vectored write under trio-websocket's own stream lock, instead
of one wsproto encode and one awaited write per subscriber per event.
This reaches into trio-websocket internals (``_stream``, ``_stream_lock``, ``_send``, ``_pings``)
and drops wsproto's finished handshake parser; both versions are pinned in pyproject.toml and
the session tests exercise every one of these paths.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import parse_qs, urlsplit

import itertools

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, WebSocketServer
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Ping

from wsserver.framing import text_frame
from wsserver.limits import Admission

log = logging.getLogger("wsserver.transport")

WS_PATH: Final = "/ws"
#: Seconds a client gets to finish the HTTP upgrade handshake.
HANDSHAKE_TIMEOUT: Final = 10.0
#: Seconds we wait for the peer's close frame after sending ours.
CLOSE_HANDSHAKE_TIMEOUT: Final = 2.0
#: trio-websocket's inbound message queue per connection: 1 keeps memory low and applies
#: backpressure to a client that sends faster than its session handles frames.
INBOUND_QUEUE: Final = 1

#: Most buffers one sendmsg() takes (Linux's UIO_MAXIOV).
IOV_MAX: Final = 1024
#: Bytes joined per write on a TLS connection (the SSL stream takes one buffer at a time).
TLS_WRITE_CHUNK: Final = 64 * 1024

_PING_IDS: Final = itertools.count(1)


async def _send_vectored(sock: socket.socket, frames: list[bytes]) -> None:
    """Writes ``frames`` to a non-blocking socket with ``sendmsg``, waiting for writability when
    the kernel's buffer is full; a partly written frame continues from a memoryview (no copy)."""
    pending: list = frames
    waited = False
    while pending:
        try:
            sent = sock.sendmsg(pending[:IOV_MAX] if len(pending) > IOV_MAX else pending)
        except BlockingIOError:
            sent = 0
        except OSError as exc:  # reset or broken pipe: the peer is gone
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
            await trio.lowlevel.wait_writable(sock)
            waited = True
    if not waited:
        await trio.lowlevel.checkpoint()


def _chunks(frames: list[bytes], size: int):
    """Joins consecutive frames into buffers of about ``size`` bytes (a larger frame alone)."""
    chunk: list[bytes] = []
    total = 0
    for frame in frames:
        if chunk and total + len(frame) > size:
            yield b"".join(chunk)
            chunk, total = [], 0
        chunk.append(frame)
        total += len(frame)
    if chunk:
        yield chunk[0] if len(chunk) == 1 else b"".join(chunk)


class PongWaiter:
    """Stands in trio-websocket's table of pings in flight; its reader calls ``set()`` when the
    matching pong (or a later one) arrives, and we note when."""

    __slots__ = ("sent", "received")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.received: float | None = None

    def set(self) -> None:
        if self.received is None:
            self.received = trio.current_time()


class WsTransport:
    """One accepted WebSocket connection, as the session sees it."""

    __slots__ = ("_ws", "remote", "_admission", "user")

    def __init__(self, ws: WebSocketConnection, remote: str, admission: Admission | None = None) -> None:
        self._ws = ws
        self.remote = remote
        self._admission = admission
        self.user: str | None = None

    def admit_user(self, user_id: str) -> bool:
        """Counts this connection against ``user_id``'s limit; False when it is over it."""
        if self._admission is None or self.user is not None:
            return True
        if not self._admission.admit_user(user_id):
            return False
        self.user = user_id
        return True

    async def receive(self) -> str | bytes:
        """Next message; raises ConnectionClosed when the connection is gone."""
        return await self._ws.get_message()

    async def send_frames(self, frames: list[bytes]) -> None:
        """Writes already-framed bytes (each one or more whole frames), in order; raises
        ConnectionClosed.

        On a plain TCP connection, with trio-websocket's stream lock held, the frames go to the
        non-blocking socket in vectored writes (``sendmsg``): the shared frame bytes of every
        queued event are written as they are, never joined into a per-connection copy (with
        1,000 slow subscribers, joined batches were the server's memory). What the kernel does
        not take at once waits for the socket to become writable, still under the lock, so no
        ping, pong or close frame can land inside a frame. TLS connections join at most
        ``TLS_WRITE_CHUNK`` bytes at a time for the SSL stream (bench/results/profile.md §4)."""
        ws = self._ws
        if ws._close_reason is not None:
            raise ConnectionClosed(ws._close_reason)
        lock, stream = ws._stream_lock, ws._stream
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if type(stream) is trio.SocketStream:
                await _send_vectored(stream.socket._sock, frames)
            else:
                for chunk in _chunks(frames, TLS_WRITE_CHUNK):
                    await stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await ws._abort_web_socket()
            raise ConnectionClosed(ws._close_reason) from None
        finally:
            lock.release()

    async def send_wire(self, data: bytes) -> None:
        """Writes one buffer of already-framed bytes; see ``send_frames``."""
        await self.send_frames([data])

    async def send_ping(self, waiter: PongWaiter) -> None:
        """Sends a WebSocket ping without waiting for its pong; ``waiter`` notes the pong."""
        ws = self._ws
        if ws._close_reason is not None:
            raise ConnectionClosed(ws._close_reason)
        payload = struct.pack("!Q", next(_PING_IDS))
        ws._pings[payload] = waiter  # type: ignore[assignment]
        await ws._send(Ping(payload=payload))

    @property
    def close_code(self) -> int | None:
        reason = self._ws.closed
        return None if reason is None else reason.code

    async def close(self, code: int, reason: str) -> None:
        """Close handshake, bounded; the TCP connection is closed either way."""
        with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT) as scope:
            scope.shield = True
            await self._ws.aclose(code, reason[:120])
        if scope.cancelled_caught:
            await self.abort()

    async def abort(self) -> None:
        """Closes the TCP connection at once, without a close handshake (dead peer)."""
        with trio.CancelScope(shield=True):
            await self._ws._close_stream()


class _FinishedHandshake:
    """What wsproto still asks of a completed handshake: no more events."""

    __slots__ = ()

    def events(self) -> tuple[()]:
        return ()


_FINISHED_HANDSHAKE: Final = _FinishedHandshake()


def _release_handshake_state(ws: WebSocketConnection) -> None:
    """After the upgrade, wsproto keeps the handshake (an h11 parser, the request, an event
    deque) for the connection's lifetime, though only ``events()`` is ever called on it again;
    a shared stand-in saves ~3 KiB per idle connection."""
    proto = ws._wsproto
    handshake = getattr(proto, "handshake", None)
    if proto.connection is not None and handshake is not None and not getattr(handshake, "_events", True):
        proto.handshake = _FINISHED_HANDSHAKE


def _header(request: WebSocketRequest, name: bytes) -> str | None:
    for key, value in request.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _remote(request: WebSocketRequest) -> str:
    remote = request.remote
    return f"{remote.address}:{remote.port}" if hasattr(remote, "address") else str(remote)


ConnectionHandler = Callable[[WsTransport, "str | None", WebSocketRequest], Awaitable[None]]


async def serve_websockets(
    handler: ConnectionHandler,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    max_message_size: int,
    allowed_origins: tuple[str, ...],
    allow_query_token: bool,
    handler_nursery: trio.Nursery,
    tcp_user_timeout_ms: int,
    on_refused: Callable[[str], None],
    admission: Admission | None = None,
    task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves WebSocket connections until cancelled; supports ``nursery.start`` (→ bound ports).

    Each accepted connection runs ``handler(transport, query_token, request)`` in
    ``handler_nursery``, so cancelling this task stops accepting without touching live sessions.
    """
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    for listener in listeners:
        sock = listener.socket
        if hasattr(socket, "TCP_USER_TIMEOUT") and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Inherited by accepted sockets: unacknowledged data fails the connection after this,
            # so a black-holed peer is dropped by the kernel too, not after ~15 minutes.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, tcp_user_timeout_ms)
    ports = sorted({listener.socket.getsockname()[1] for listener in listeners})
    wrapped: list = listeners
    if ssl_context is not None:
        wrapped = [trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in listeners]
    origins = frozenset(o.rstrip("/") for o in allowed_origins)

    async def on_request(request: WebSocketRequest) -> None:
        try:
            await _upgrade(request)
        except ConnectionClosed:
            pass  # the client vanished during the handshake (a phone's radio dropped): its loss only

    async def _upgrade(request: WebSocketRequest) -> None:
        target = urlsplit(request.path)
        if target.path != WS_PATH:
            on_refused("path")
            await _refuse(request, 404, body=b"not found: the WebSocket endpoint is /ws\n")
            return
        origin = _header(request, b"origin")
        if origins and origin is not None and origin.rstrip("/") not in origins:
            on_refused("origin")
            await _refuse(request, 403, body=b"origin not allowed\n")
            return
        query_token = None
        if target.query:
            tokens = parse_qs(target.query).get("token")
            if tokens:
                if not allow_query_token:
                    on_refused("query_token")
                    await _refuse(request, 403, body=b"query-string tokens are disabled: send an `auth` frame\n")
                    return
                query_token = tokens[0]
        ip = getattr(request.remote, "address", str(request.remote))
        if admission is not None:
            refused = admission.admit(ip)
            if refused is not None:
                on_refused("limit")
                await _refuse(request, 503, extra_headers=[("Retry-After", "5")], body=refused.encode() + b"\n")
                return
        transport = None
        try:
            ws = await request.accept()
            _end_handshake(request)
            _release_handshake_state(ws)
            transport = WsTransport(ws, _remote(request), admission)
            await handler(transport, query_token, request)
        finally:
            if admission is not None:
                admission.release(ip)
                if transport is not None and transport.user is not None:
                    admission.release_user(transport.user)

    server = _SupervisedServer(
        on_request,
        wrapped,
        handler_nursery=handler_nursery,
        message_queue_size=INBOUND_QUEUE,
        max_message_size=max_message_size,
        connect_timeout=HANDSHAKE_TIMEOUT,
        disconnect_timeout=CLOSE_HANDSHAKE_TIMEOUT,
        admission=admission,
        on_refused=on_refused,
    )
    await trio.lowlevel.checkpoint()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        task_status.started(ports)
        await trio.sleep_forever()


async def _refuse(request: WebSocketRequest, status: int, *, body: bytes, extra_headers=None) -> None:
    """Answers the upgrade with an HTTP error, then closes the TCP connection at once
    (trio-websocket would keep reading a refused connection until the client leaves)."""
    _end_handshake(request)
    await request.reject(status, extra_headers=extra_headers, body=body)
    await request._connection._close_stream()


class HandshakeTicket:
    """One handshake in progress, counted by admission until the upgrade is answered."""

    __slots__ = ("_admission", "_ip")

    def __init__(self, admission: Admission, ip: str) -> None:
        self._admission: Admission | None = admission
        self._ip = ip

    def end(self) -> None:
        """The upgrade was answered (or the connection ended); idempotent."""
        if self._admission is not None:
            self._admission.end_handshake(self._ip)
            self._admission = None


def _peer_ip(stream: trio.abc.Stream) -> str:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        return str(inner.socket.getpeername()[0])  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return "?"


def _end_handshake(request: WebSocketRequest) -> None:
    ticket = getattr(request._connection, "handshake_ticket", None)
    if ticket is not None:
        ticket.end()


class _Connection(WebSocketConnection):
    """trio-websocket's connection, answering a protocol error with a Close frame.

    On a malformed frame (bad opcode or bits, invalid UTF-8, bad close code) wsproto reports a
    CloseConnection with the error's code (1002, 1007) as if the peer had closed; trio-websocket
    then drops the TCP connection without a Close frame. RFC 6455 §7.1.7 says the endpoint
    should send one, so clients see 1002/1007 instead of 1006."""

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            try:
                await self._send(CloseConnection(code=event.code, reason=event.reason))
            except ConnectionClosed:
                pass  # already gone: nothing more to tell it
        await super()._handle_close_connection_event(event)


class _SupervisedServer(WebSocketServer):
    """trio-websocket's server, with one supervision boundary per connection: whatever ends
    one connection's tasks (a reset mid-handshake, a TLS failure, a protocol error while
    answering one) is logged and ends that connection only, never the listener or the server.

    ``_run_connection`` is trio-websocket 0.12.2's ``_handle_connection`` building our
    ``_Connection`` instead of its own."""

    async def _run_connection(self, stream: trio.abc.Stream, ticket: HandshakeTicket | None = None) -> None:
        if isinstance(stream, trio.SSLStream):
            # A failed TLS handshake (TLS 1.0 client, scanner) ends here at once, instead of
            # holding the socket until the upgrade deadline.
            with trio.move_on_after(self._connect_timeout) as tls_deadline:
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError:
                    await trio.aclose_forcefully(stream)
                    return
            if tls_deadline.cancelled_caught:
                await trio.aclose_forcefully(stream)
                return
        async with trio.open_nursery() as nursery:
            connection = _Connection(
                stream,
                WSConnection(ConnectionType.SERVER),
                message_queue_size=self._message_queue_size,
                max_message_size=self._max_message_size,
                receive_buffer_size=self._receive_buffer_size,
            )
            connection.handshake_ticket = ticket
            connect_scope = trio.CancelScope(deadline=trio.current_time() + self._connect_timeout)

            async def read() -> None:
                await connection._reader_task()
                # EOF or reset before the upgrade request: stop waiting for it now (trio-websocket
                # would wait out the whole handshake deadline, holding the socket and its slot).
                connect_scope.cancel()

            nursery.start_soon(read)
            with connect_scope:
                request = await connection._get_request()
            if connect_scope.cancelled_caught:
                nursery.cancel_scope.cancel()
                await stream.aclose()
                return
            try:
                await self._handler(request)
            finally:
                with trio.move_on_after(self._disconnect_timeout):
                    await connection.aclose()  # also ends the reader task

    def __init__(self, *args, admission: Admission | None = None, on_refused: Callable[[str], None] = lambda r: None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._admission = admission
        self._on_refused = on_refused

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        ticket = None
        if self._admission is not None:
            ip = _peer_ip(stream)
            refused = self._admission.begin_handshake(ip)
            if refused is not None:
                # Counted from the TCP accept: a flood of handshakes that never finish (slowloris)
                # is refused here at once, before it costs a connection object and a reader task.
                self._on_refused("handshakes")
                await trio.aclose_forcefully(stream)
                return
            ticket = HandshakeTicket(self._admission, ip)
        try:
            await self._run_connection(stream, ticket)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away: nothing to report
        except Exception as exc:  # the boundary: log it, keep serving others
            if isinstance(exc, ExceptionGroup) and not exc.subgroup(
                lambda e: not isinstance(e, (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError))
            ):
                return
            log.warning("connection ended by an unexpected error: %r", exc, exc_info=exc)
        finally:
            if ticket is not None:
                ticket.end()


def make_server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.2+ with the default (AEAD-first) ciphers; raises ValueError with a plain message."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20")
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ValueError(f"TLS file not found: {exc.filename}") from None
    except ssl.SSLError as exc:
        raise ValueError(f"tls_cert/tls_key cannot be used (missing, not PEM, or key does not match): {exc}") from None
    return ctx


__all__ = ["ConnectionClosed", "WsTransport", "serve_websockets", "text_frame", "make_server_ssl_context"]
