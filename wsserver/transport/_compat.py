"""Every use of a private name of trio-websocket, wsproto and trio, in one module, checked at
import: an upgrade of either library fails at start with a plain message naming what changed,
instead of 1011 on every connection (each hook has a test in tests/wsserver/test_transport_compat.py).

Why the transport reaches inside at all (each hook says which):
* writing pre-framed, shared frame bytes in vectored writes under trio-websocket's stream lock
  (``write_frames``): no wsproto encode and no copy per subscriber;
* WebSocket pings whose pong we time ourselves (``send_ping``), dead peers cut without a close
  handshake (``abort``), a connection failed on its own error (``fail``);
* memory: wsproto's finished handshake parser released (``release_handshake``);
* a server with one supervision boundary per connection, handshake admission counted from the
  TCP accept, a client that leaves mid-handshake freed at once, refused upgrades closed at once,
  protocol errors answered with a Close frame (``SupervisedServer``, ``Connection``, ``refuse``).
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any, Final

import trio
import trio_websocket
import wsproto
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, WebSocketServer
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Ping

log = logging.getLogger("wsserver.transport")

#: The versions these hooks were written and tested against (pinned in pyproject.toml).
SUPPORTED: Final = {"trio-websocket": ("0.12.2",), "wsproto": ("1.3.2",)}
#: Most buffers one sendmsg() takes (Linux's UIO_MAXIOV).
IOV_MAX: Final = 1024
#: Bytes joined per write on a TLS connection (the SSL stream takes one buffer at a time).
TLS_WRITE_CHUNK: Final = 64 * 1024

_PING_IDS: Final = itertools.count(1)


class TransportCompatError(RuntimeError):
    """trio-websocket, wsproto or trio changed in a way the transport's hooks cannot follow."""


# --------------------------------------------------------------------------- the check


class _ProbeStream(trio.abc.HalfCloseableStream):
    """A stream that is never used: only lets a connection object be built for inspection."""

    async def send_all(self, data: Any) -> None: ...
    async def wait_send_all_might_not_block(self) -> None: ...
    async def send_eof(self) -> None: ...
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return b""
    async def aclose(self) -> None: ...


class _ProbeListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener that is never used: only lets a server object be built for inspection."""

    async def accept(self) -> trio.abc.Stream:
        raise trio.ClosedResourceError
    async def aclose(self) -> None: ...


_CONNECTION_METHODS: Final = (
    "_abort_web_socket", "_send", "_close_stream", "_reader_task", "_get_request", "_handle_close_connection_event",
)
_CONNECTION_ATTRIBUTES: Final = ("_close_reason", "_stream_lock", "_stream", "_pings", "_wsproto")
_SERVER_ATTRIBUTES: Final = (
    "_handle_connection", "_handler", "_connect_timeout", "_disconnect_timeout", "_message_queue_size",
    "_max_message_size", "_receive_buffer_size",
)


def installed_versions() -> dict[str, str]:
    """The libraries' own ``__version__`` (a PyInstaller binary carries no package metadata),
    else their package metadata."""
    out = {}
    for name, module in (("trio-websocket", trio_websocket), ("wsproto", wsproto)):
        version = getattr(module, "__version__", None)
        if not isinstance(version, str):
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = "unknown"
        out[name] = version
    return out


def problems(versions: dict[str, str] | None = None) -> list[str]:
    """What does not fit: versions outside SUPPORTED and private names that are gone."""
    found = versions if versions is not None else installed_versions()
    out = [
        f"{name} {found[name]} is installed, but wsserver's transport was written for {name} "
        f"{' or '.join(ok)} (pin it: pip install '{name}=={ok[-1]}')"
        for name, ok in SUPPORTED.items()
        if found.get(name) not in ok
    ]
    for name in _CONNECTION_METHODS:
        if not callable(getattr(WebSocketConnection, name, None)):
            out.append(f"trio_websocket.WebSocketConnection.{name}() is gone")
    if not callable(getattr(WebSocketRequest, "reject", None)):
        out.append("trio_websocket.WebSocketRequest.reject() is gone")
    try:
        probe = WebSocketConnection(_ProbeStream(), WSConnection(ConnectionType.SERVER))
    except Exception as exc:  # noqa: BLE001 - any failure to build one is the finding itself
        out.append(f"trio_websocket.WebSocketConnection cannot be built as before: {exc!r}")
    else:
        out += [f"trio_websocket.WebSocketConnection().{n} is gone" for n in _CONNECTION_ATTRIBUTES
                if not hasattr(probe, n)]
        proto = getattr(probe, "_wsproto", None)
        if proto is not None and not (hasattr(proto, "handshake") and hasattr(proto, "connection")):
            out.append("wsproto.WSConnection has no `handshake`/`connection` attributes any more")
    try:
        server = WebSocketServer(lambda request: None, [_ProbeListener()])
    except Exception as exc:  # noqa: BLE001 - any failure to build one is the finding itself
        out.append(f"trio_websocket.WebSocketServer cannot be built as before: {exc!r}")
    else:
        out += [f"trio_websocket.WebSocketServer().{n} is gone" for n in _SERVER_ATTRIBUTES if not hasattr(server, n)]
    with socket.socket() as raw:
        if not isinstance(getattr(trio.socket.from_stdlib_socket(raw), "_sock", None), socket.socket):
            out.append("trio.socket.SocketType._sock (the stdlib socket) is gone")
    return out


def check() -> None:
    """Raises TransportCompatError naming every problem; called when this module is imported."""
    found = problems()
    if found:
        raise TransportCompatError(
            "the WebSocket transport cannot run with the installed libraries:\n  - " + "\n  - ".join(found)
        )


check()


# --------------------------------------------------------------------------- connection hooks


def close_reason(ws: WebSocketConnection) -> Any:
    """The connection's close reason, None while it is open (trio-websocket's ``_close_reason``)."""
    return ws._close_reason


def raise_if_closed(ws: WebSocketConnection) -> None:
    if ws._close_reason is not None:
        raise ConnectionClosed(ws._close_reason)


async def write_frames(ws: WebSocketConnection, frames: list[bytes]) -> None:
    """Writes already-framed bytes (each one or more whole frames, in order) under trio-websocket's
    stream lock, so no ping, pong or close frame can land inside a frame; raises ConnectionClosed.

    Plain TCP: vectored ``sendmsg`` of the frames as they are on the non-blocking socket (the
    shared frame bytes of an event are never joined into a per-connection copy); what the kernel
    does not take at once waits for writability, still under the lock. TLS: joined in chunks of
    TLS_WRITE_CHUNK for the SSL stream."""
    raise_if_closed(ws)
    lock, stream = ws._stream_lock, ws._stream
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()
    try:
        if type(stream) is trio.SocketStream:
            await _send_vectored(stream.socket._sock, frames)  # type: ignore[attr-defined]
        else:
            for chunk in _chunks(frames, TLS_WRITE_CHUNK):
                await stream.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        await ws._abort_web_socket()
        raise ConnectionClosed(ws._close_reason) from None
    finally:
        lock.release()


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


async def send_ping(ws: WebSocketConnection, waiter: Any) -> None:
    """Sends a WebSocket ping without waiting for its pong: ``waiter`` stands in trio-websocket's
    table of pings in flight, whose reader calls ``waiter.set()`` on the matching (or a later) pong."""
    raise_if_closed(ws)
    payload = struct.pack("!Q", next(_PING_IDS))
    ws._pings[payload] = waiter
    await ws._send(Ping(payload=payload))


async def close_stream(ws: WebSocketConnection) -> None:
    """Closes the TCP connection at once, without a close handshake (a dead peer)."""
    await ws._close_stream()


class _FinishedHandshake:
    """What wsproto still asks of a completed handshake: no more events."""

    __slots__ = ()

    def events(self) -> tuple[()]:
        return ()


_FINISHED_HANDSHAKE: Final = _FinishedHandshake()


def release_handshake(ws: WebSocketConnection) -> None:
    """After the upgrade, wsproto keeps the handshake (an h11 parser, the request, an event
    deque) for the connection's lifetime, though only ``events()`` is ever called on it again;
    a shared stand-in saves ~3 KiB per idle connection."""
    proto = ws._wsproto
    handshake = getattr(proto, "handshake", None)
    if proto.connection is not None and handshake is not None and not getattr(handshake, "_events", True):
        proto.handshake = _FINISHED_HANDSHAKE


# --------------------------------------------------------------------------- server hooks


def _handshake_ticket(request: WebSocketRequest) -> Any:
    return getattr(request._connection, "handshake_ticket", None)


def end_handshake(request: WebSocketRequest) -> None:
    """The upgrade was answered: the handshake no longer counts against admission."""
    ticket = _handshake_ticket(request)
    if ticket is not None:
        ticket.end()


async def refuse(request: WebSocketRequest, status: int, *, body: bytes, extra_headers=None) -> None:
    """Answers the upgrade with an HTTP error, then closes the TCP connection at once
    (trio-websocket would keep reading a refused connection until the client leaves)."""
    end_handshake(request)
    await request.reject(status, extra_headers=extra_headers, body=body)
    await request._connection._close_stream()


class Connection(WebSocketConnection):
    """trio-websocket's connection, answering a protocol error with a Close frame.

    On a malformed frame (bad opcode or bits, invalid UTF-8, bad close code) wsproto reports a
    CloseConnection with the error's code (1002, 1007) as if the peer had closed; trio-websocket
    then drops the TCP connection without a Close frame. RFC 6455 §7.1.7 says the endpoint
    should send one, so clients see 1002/1007 instead of 1006."""

    handshake_ticket: Any = None

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            try:
                await self._send(CloseConnection(code=event.code, reason=event.reason))
            except ConnectionClosed:
                pass  # already gone: nothing more to tell it
        await super()._handle_close_connection_event(event)


def peer_ip(stream: trio.abc.Stream) -> str:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        return str(inner.socket.getpeername()[0])  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return "?"


class SupervisedServer(WebSocketServer):
    """trio-websocket's server, with one supervision boundary per connection: whatever ends
    one connection's tasks (a reset mid-handshake, a TLS failure, a protocol error while
    answering one) is logged and ends that connection only, never the listener or the server.

    ``_run_connection`` is trio-websocket 0.12.2's ``_handle_connection`` building our
    ``Connection`` instead of its own, with the handshake counted by admission from the accept.

    Args:
        begin_handshake: called with the peer's IP at the TCP accept; returns a ticket (its
            ``end()`` is called once the upgrade is answered or the connection ends) or None to
            drop the connection at once.
    """

    def __init__(self, *args: Any, begin_handshake: Callable[[str], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._begin_handshake = begin_handshake

    async def _run_connection(self, stream: trio.abc.Stream, ticket: Any = None) -> None:
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
            connection = Connection(
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

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        ticket = None
        if self._begin_handshake is not None:
            ticket = self._begin_handshake(peer_ip(stream))
            if ticket is None:
                await trio.aclose_forcefully(stream)
                return
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


RequestHandler = Callable[[WebSocketRequest], Awaitable[None]]

__all__ = [
    "ConnectionClosed", "Connection", "SupervisedServer", "TransportCompatError", "check", "close_reason",
    "close_stream", "end_handshake", "problems", "raise_if_closed", "refuse", "release_handshake", "send_ping",
    "write_frames", "trio_websocket", "wsproto",
]
