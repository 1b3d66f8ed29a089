"""The WebSocket listener and its handshake policy: path `/ws`, Origin allow-list, `?token=`,
admission (counted from the TCP accept), TLS; each accepted connection becomes a ``WsTransport``
handed to the server's connection handler."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest

from wsserver.limits import Admission
from wsserver.transport import _compat
from wsserver.transport.connection import CLOSE_HANDSHAKE_TIMEOUT, WsTransport

log = logging.getLogger("wsserver.transport")

WS_PATH: Final = "/ws"
#: Seconds a client gets to finish the HTTP upgrade handshake.
HANDSHAKE_TIMEOUT: Final = 10.0
#: trio-websocket's inbound message queue per connection: 1 keeps memory low and applies
#: backpressure to a client that sends faster than its session handles frames.
INBOUND_QUEUE: Final = 1


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
            await _compat.refuse(request, 404, body=b"not found: the WebSocket endpoint is /ws\n")
            return
        origin = _header(request, b"origin")
        if origins and origin is not None and origin.rstrip("/") not in origins:
            on_refused("origin")
            await _compat.refuse(request, 403, body=b"origin not allowed\n")
            return
        query_token = None
        if target.query:
            tokens = parse_qs(target.query).get("token")
            if tokens:
                if not allow_query_token:
                    on_refused("query_token")
                    await _compat.refuse(request, 403, body=b"query-string tokens are disabled: send an `auth` frame\n")
                    return
                query_token = tokens[0]
        ip = getattr(request.remote, "address", str(request.remote))
        if admission is not None:
            refused = admission.admit(ip)
            if refused is not None:
                on_refused("limit")
                await _compat.refuse(request, 503, extra_headers=[("Retry-After", "5")], body=refused.encode() + b"\n")
                return
        transport = None
        try:
            ws = await request.accept()
            _compat.end_handshake(request)
            _compat.release_handshake(ws)
            transport = WsTransport(ws, _remote(request), admission)
            await handler(transport, query_token, request)
        finally:
            if admission is not None:
                admission.release(ip)
                if transport is not None and transport.user is not None:
                    admission.release_user(transport.user)

    def begin_handshake(ip: str) -> HandshakeTicket | None:
        if admission is None:
            return None  # nothing to count
        refused = admission.begin_handshake(ip)
        if refused is not None:
            # Counted from the TCP accept: a flood of handshakes that never finish (slowloris)
            # is refused here at once, before it costs a connection object and a reader task.
            on_refused("handshakes")
            return None
        return HandshakeTicket(admission, ip)

    server = _compat.SupervisedServer(
        on_request,
        wrapped,
        handler_nursery=handler_nursery,
        message_queue_size=INBOUND_QUEUE,
        max_message_size=max_message_size,
        connect_timeout=HANDSHAKE_TIMEOUT,
        disconnect_timeout=CLOSE_HANDSHAKE_TIMEOUT,
        begin_handshake=begin_handshake if admission is not None else None,
    )
    await trio.lowlevel.checkpoint()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        task_status.started(ports)
        await trio.sleep_forever()



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
