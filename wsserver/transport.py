"""The WebSocket transport: trio-websocket listeners, the handshake policy (path `/ws`, Origin
allow-list, `?token=`), and a connection adapter that writes pre-framed bytes.

Why pre-framed bytes: server→client frames are unmasked, so a channel event's WebSocket frame is
the same bytes for every subscriber. We build it once per event (``text_frame``) and let each
connection's writer coalesce its queued frames into one ``send_all`` under trio-websocket's own
stream lock, instead of one wsproto encode and one awaited write per subscriber per event.
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

_OP_TEXT: Final = 0x81  # FIN + text opcode
_PING_IDS: Final = itertools.count(1)


def text_frame(payload: bytes) -> bytes:
    """Frames UTF-8 JSON ``payload`` as one unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((_OP_TEXT, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", _OP_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _OP_TEXT, 127, n) + payload


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

    async def send_wire(self, data: bytes) -> None:
        """Writes already-framed bytes (one or more whole frames); raises ConnectionClosed.

        Fast path (most writes on a plain TCP connection): with trio-websocket's stream lock free,
        take it without waiting and hand the bytes straight to the non-blocking socket; only what
        the kernel did not take right away goes through the awaited ``send_all``, still under the
        lock, so no ping, pong or close frame can land inside a frame. This skips the async lock,
        the stream's conflict detector and two checkpoints per write (bench/results/profile.md §4)."""
        ws = self._ws
        if ws._close_reason is not None:
            raise ConnectionClosed(ws._close_reason)
        lock, stream = ws._stream_lock, ws._stream
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            sent = 0
            raw = stream.socket._sock if type(stream) is trio.SocketStream else None
            if raw is not None:
                try:
                    sent = raw.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:  # reset or broken pipe: the peer is gone
                    raise trio.BrokenResourceError(str(exc)) from None
            if sent < len(data):
                await stream.send_all(memoryview(data)[sent:] if sent else data)
            else:
                await trio.lowlevel.checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await ws._abort_web_socket()
            raise ConnectionClosed(ws._close_reason) from None
        finally:
            lock.release()

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
    )
    await trio.lowlevel.checkpoint()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        task_status.started(ports)
        await trio.sleep_forever()


async def _refuse(request: WebSocketRequest, status: int, *, body: bytes, extra_headers=None) -> None:
    """Answers the upgrade with an HTTP error, then closes the TCP connection at once
    (trio-websocket would keep reading a refused connection until the client leaves)."""
    await request.reject(status, extra_headers=extra_headers, body=body)
    await request._connection._close_stream()


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

    async def _run_connection(self, stream: trio.abc.Stream) -> None:
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
            nursery.start_soon(connection._reader_task)
            with trio.move_on_after(self._connect_timeout) as connect_scope:
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

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        try:
            await self._run_connection(stream)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away: nothing to report
        except Exception as exc:  # the boundary: log it, keep serving others
            if isinstance(exc, ExceptionGroup) and not exc.subgroup(
                lambda e: not isinstance(e, (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError))
            ):
                return
            log.warning("connection ended by an unexpected error: %r", exc, exc_info=exc)


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
