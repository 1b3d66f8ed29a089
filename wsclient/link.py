"""Opens one WebSocket link over a byte stream that records when data last arrived, so the
client can tell a dead link (no server ping, no frame) from a quiet one."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio
from attrs import frozen
from trio_websocket import WebSocketConnection, wrap_client_stream


@frozen
class WsUrl:
    """A parsed ``ws://`` / ``wss://`` URL."""

    secure: bool
    host: str
    port: int
    resource: str

    @property
    def host_header(self) -> str:
        return self.host if self.port in (80, 443) else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> WsUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
        secure = parts.scheme == "wss"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(secure, parts.hostname, parts.port or (443 if secure else 80), resource)


class WatchedStream(trio.abc.Stream):
    """A transparent stream wrapper; ``last_received`` is the trio time data last arrived.

    trio-websocket answers server pings inside its reader task, out of our sight; every ping
    still passes through ``receive_some`` here, which is all dead-link detection needs."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.last_received = trio.current_time()

    def touch(self) -> None:
        """Counts as a sign of life (used while the app, not the network, holds us up)."""
        self.last_received = trio.current_time()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self.last_received = trio.current_time()
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


async def open_link(
    nursery: trio.Nursery, url: WsUrl, *, ssl_context: ssl.SSLContext | None, max_message_size: int
) -> tuple[WebSocketConnection, WatchedStream]:
    """Connects and completes the WebSocket handshake; the connection's reader runs in ``nursery``.

    Raises OSError or ``trio_websocket.HandshakeError`` when the link cannot be opened."""
    if url.secure:
        stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
            url.host, url.port, ssl_context=ssl_context or ssl.create_default_context(), https_compatible=True
        )
    else:
        stream = await trio.open_tcp_stream(url.host, url.port)
    watched = WatchedStream(stream)
    try:
        ws = await wrap_client_stream(
            nursery, watched, url.host_header, url.resource, max_message_size=max_message_size
        )
    except BaseException:
        await trio.aclose_forcefully(watched)
        raise
    return ws, watched
