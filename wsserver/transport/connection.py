"""One accepted WebSocket connection as the rest of the server sees it (``WsTransport``): receive
messages, write pre-framed bytes, ping, close, abort. Owns no protocol logic; every private
access to trio-websocket goes through ``_compat``."""

from __future__ import annotations

from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from wsserver.limits import Admission
from wsserver.transport import _compat

#: Seconds we wait for the peer's close frame after sending ours.
CLOSE_HANDSHAKE_TIMEOUT: Final = 2.0


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
        """Writes already-framed bytes, in order (see ``_compat.write_frames``); raises ConnectionClosed."""
        await _compat.write_frames(self._ws, frames)

    async def send_wire(self, data: bytes) -> None:
        """Writes one buffer of already-framed bytes."""
        await _compat.write_frames(self._ws, [data])

    async def send_ping(self, waiter: PongWaiter) -> None:
        """Sends a WebSocket ping without waiting for its pong; ``waiter`` notes the pong."""
        await _compat.send_ping(self._ws, waiter)

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
            await _compat.close_stream(self._ws)


__all__ = ["ConnectionClosed", "PongWaiter", "WsTransport", "CLOSE_HANDSHAKE_TIMEOUT"]
