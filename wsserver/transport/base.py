"""What a connection needs of its transport (``Transport``), so the connection, its
subscriptions and its queue can be tested over an in-memory transport (``transport.memory``) with
Trio's MockClock, and run over trio-websocket (``transport.connection.WsTransport``) in production."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio
from attrs import frozen


@frozen
class CloseReason:
    """Why a connection closed: the close code (1006: lost without a close frame) and reason."""

    code: int
    reason: str = ""


class ConnectionClosed(Exception):
    """The connection is gone; ``reason`` says how (every transport method raises it then)."""

    def __init__(self, reason: CloseReason | None) -> None:
        super().__init__(reason)
        self.reason = reason


class PongWaiter:
    """One ping in flight; the transport calls ``set()`` when the matching (or a later) pong
    arrives, and the connection reads when."""

    __slots__ = ("sent", "received")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.received: float | None = None

    def set(self) -> None:
        if self.received is None:
            self.received = trio.current_time()


class Transport(Protocol):
    """One accepted WebSocket connection. Every method raises ``ConnectionClosed`` once it is gone."""

    remote: str
    user: str | None
    #: where the transport sends the control frames the protocol itself must write (a pong, the
    #: answer to a close): the connection's own write path, so they stay in order
    on_control: Callable[[bytes], None] | None

    def admit_user(self, user_id: str) -> bool:
        """Counts the connection against ``user_id``'s connection limit; False when over it."""

    async def receive(self) -> str | bytes:
        """The next message from the client."""

    def write_now(self, data: bytes) -> int | None:
        """``try_write`` of one buffer."""

    def try_write(self, buffers: list) -> int | None:
        """Writes what the socket takes now without waiting (bytes written); None: cannot be
        written directly now, use ``send_frames``."""

    async def send_frames(self, frames: list) -> None:
        """Writes already-framed bytes in order, waiting for the socket as needed."""

    def ping_frame(self, waiter: PongWaiter) -> bytes:
        """A pre-framed ping to write; ``waiter`` is set when its pong arrives."""

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed (by either side), else None."""

    async def close(self, code: int, reason: str) -> None:
        """Close handshake, bounded; the connection is closed either way."""

    async def abort(self) -> None:
        """Cuts the connection at once, without a close handshake (the peer is gone)."""
