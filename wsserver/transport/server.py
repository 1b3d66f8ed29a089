"""The WebSocket listener and its handshake: TCP (or TLS) accept, admission counted from the
accept, the HTTP upgrade read with wsproto under a deadline, the policy (path `/ws`, Origin
allow-list, `?token=`, connection limits → 404/403/503), then the 101 and a ``WsConnection``
handed to the server's connection handler. Every accepted connection runs in its own task of
``handler_nursery``, inside one failure boundary: whatever ends it is logged and ends it only.
"""

from __future__ import annotations

import logging
import socket
import ssl
from functools import partial
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import parse_qs, urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from wsserver.limits import Admission
from wsserver.transport.base import ConnectionClosed
from wsserver.transport.websocket import WsConnection

log = logging.getLogger("wsserver.transport")

WS_PATH: Final = "/ws"
#: Seconds a client gets to finish the TLS and HTTP upgrade handshakes.
HANDSHAKE_TIMEOUT: Final = 10.0
#: Bytes read per receive during the handshake; an upgrade request bigger than MAX_REQUEST is refused.
HANDSHAKE_READ: Final = 4096
MAX_REQUEST: Final = 64 * 1024

ConnectionHandler = Callable[[WsConnection, "str | None"], Awaitable[None]]


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


class _Refused(Exception):
    """The upgrade is answered with an HTTP error (and the TCP connection closed)."""

    def __init__(self, status: int, body: bytes, reason: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(reason)
        self.status, self.body, self.reason, self.headers = status, body, reason, headers or []


def _peer(stream: trio.abc.Stream) -> tuple[str, str]:
    """(ip, "ip:port") of the peer."""
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        address = inner.socket.getpeername()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return "?", "?"
    ip, port = str(address[0]), address[1]
    return ip, (f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")


def _header(request: Request, name: bytes) -> str | None:
    for key, value in request.extra_headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read_request(stream: trio.abc.Stream, ws: WSConnection) -> Request | None:
    """The upgrade request; None when the client left first. RemoteProtocolError when it is not
    a WebSocket upgrade (its ``event_hint`` says how wsproto would answer: 400, 426…)."""
    received = 0
    while True:
        for event in ws.events():
            if isinstance(event, Request):
                return event
        data = await stream.receive_some(HANDSHAKE_READ)
        if not data:
            return None
        received += len(data)
        if received > MAX_REQUEST:
            raise _Refused(431, b"request header fields too large\n", "header")
        ws.receive_data(data)


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
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves WebSocket connections until cancelled; supports ``nursery.start`` (→ bound ports).

    Each accepted connection runs ``handler(connection, query_token)`` in ``handler_nursery``,
    so cancelling this task stops accepting without touching live connections. ``reuse_port``:
    this process's own listening socket on a port other worker processes listen on too
    (``SO_REUSEPORT``: the kernel spreads new connections over the workers' sockets).
    """
    listeners = await (reuse_port_listeners(host, port) if reuse_port else trio.open_tcp_listeners(port, host=host or None))
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

    def policy(request: Request, ip: str) -> str | None:
        """Checks the upgrade request; returns the `?token=` (or None), raises _Refused."""
        target = urlsplit(request.target)
        if target.path != WS_PATH:
            raise _Refused(404, b"not found: the WebSocket endpoint is /ws\n", "path")
        origin = _header(request, b"origin")
        if origins and origin is not None and origin.rstrip("/") not in origins:
            raise _Refused(403, b"origin not allowed\n", "origin")
        query_token = None
        if target.query:
            tokens = parse_qs(target.query).get("token")
            if tokens:
                if not allow_query_token:
                    raise _Refused(403, b"query-string tokens are disabled: send an `auth` frame\n", "query_token")
                query_token = tokens[0]
        if admission is not None:
            refused = admission.admit(ip)
            if refused is not None:
                raise _Refused(503, refused.encode() + b"\n", "limit", [(b"Retry-After", b"5")])
        return query_token

    async def upgrade(stream: trio.abc.Stream, ip: str, remote: str, ticket: HandshakeTicket | None) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        admitted = False
        with trio.move_on_after(HANDSHAKE_TIMEOUT) as deadline:
            if isinstance(stream, trio.SSLStream):
                # A failed TLS handshake (TLS 1.0 client, scanner) ends here at once.
                await stream.do_handshake()
            try:
                request = await _read_request(stream, ws)
                if request is None:
                    return  # gone before its upgrade request: its slot is freed now
                query_token = policy(request, ip)
                request = None  # nothing of the HTTP request stays referenced for the connection's life
                admitted = admission is not None
            except _Refused as refused:
                on_refused(refused.reason)
                await _reject(stream, ws, refused.status, refused.body, refused.headers)
                return
            except RemoteProtocolError as exc:  # not a (valid) WebSocket upgrade: 400, 426...
                on_refused("malformed")
                hint = exc.event_hint
                if isinstance(hint, RejectConnection):
                    await _reject(stream, ws, hint.status_code, f"{exc}\n".encode(), list(hint.headers))
                return
            await stream.send_all(ws.send(AcceptConnection()))
        if deadline.cancelled_caught:
            return
        if ticket is not None:
            ticket.end()
        frames = ws.connection
        assert frames is not None
        # The handshake's h11 parser and request are dropped here: only the frame protocol stays.
        connection = WsConnection(stream, frames, remote=remote, max_message_size=max_message_size, admission=admission)
        del ws, frames
        try:
            await handler(connection, query_token)
        finally:
            if admitted:
                admission.release(ip)  # type: ignore[union-attr]
                if connection.user is not None:
                    admission.release_user(connection.user)  # type: ignore[union-attr]

    async def accept(stream: trio.abc.Stream) -> None:
        """One accepted TCP connection, to its end; the failure boundary of one connection."""
        ip, remote = _peer(stream)
        ticket = None
        if admission is not None:
            refused = admission.begin_handshake(ip)
            if refused is not None:
                # Counted from the TCP accept: a flood of handshakes that never finish (slowloris)
                # is refused here at once, before it costs anything more.
                on_refused("handshakes")
                await trio.aclose_forcefully(stream)
                return
            ticket = HandshakeTicket(admission, ip)
        try:
            await upgrade(stream, ip, remote, ticket)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
            pass  # the peer went away (a phone's radio dropped mid-handshake): its loss only
        except Exception as exc:  # the boundary: log it, keep serving others
            log.warning("connection from %s ended by an unexpected error: %r", remote, exc, exc_info=exc)
        finally:
            if ticket is not None:
                ticket.end()
            await trio.aclose_forcefully(stream)

    await trio.lowlevel.checkpoint()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(trio.serve_listeners, accept, wrapped, handler_nursery=handler_nursery))
        task_status.started(ports)
        await trio.sleep_forever()


async def reuse_port_listeners(host: str, port: int, backlog: int = 1024) -> list[trio.SocketListener]:
    """Listening sockets with ``SO_REUSEPORT`` (one per address family of ``host``), built by hand
    because ``trio.open_tcp_listeners`` cannot set the option: every worker process binds its own
    socket to the same port, and the kernel hashes each new connection to one of them. (A socket
    shared by inheritance instead wakes every worker on every connection and spreads them badly.)"""
    infos = await trio.socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    families = {info[0] for info in infos}
    listeners = []
    try:
        for family, kind, proto, _name, address in infos:
            sock = trio.socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and socket.AF_INET in families:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            await sock.bind(address)
            sock.listen(backlog)
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners


async def _reject(stream: trio.abc.Stream, ws: WSConnection, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answers the upgrade with an HTTP error and a plain-text body; the caller then closes the
    TCP connection at once."""
    head = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Content-Length", str(len(body)).encode()),
            (b"Connection", b"close"), *(headers or [])]
    try:
        data = ws.send(RejectConnection(status_code=status, headers=head, has_body=True))
        data += ws.send(RejectData(data=body, body_finished=True))
    except LocalProtocolError:
        return
    with trio.move_on_after(HANDSHAKE_TIMEOUT):
        await stream.send_all(data)


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
