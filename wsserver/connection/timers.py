"""A connection's deadlines, served by the node-wide timer wheel (``wsserver.timer_wheel``):
the auth timeout (4008), heartbeat pings and the dead-peer check, `token_expiring` once per token
`token_expiring_lead` before its deadline, and `token_expired` + 4002 at it (the token's `exp`
plus the configured leeway) unless a refresh moved it.

``on_timer`` runs synchronously in the wheel's task: it queues frames (never awaits), closes or
aborts the connection, and returns the connection's next deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from wsserver.codes import CloseCode, ErrorCode
from wsserver.protocol import Envelope, TokenExpiringFrame, TokenExpiringPayload, new_id, now_ms
from wsserver.transport import ConnectionClosed, PongWaiter, Transport

if TYPE_CHECKING:
    from wsserver.auth import Claims
    from wsserver.node import Node


class Connection(Protocol):
    """What the deadlines need of their connection (``connection.core.Connection``)."""

    node: Node
    transport: Transport
    closing: bool
    claims: Claims | None
    auth_deadline: float
    next_ping: float
    pong: PongWaiter | None
    warned: Claims | None
    last_seen: float
    rtt: float | None

    def trio_time(self, wall: float) -> float: ...
    def close_soon(self, code: int, reason: str) -> None: ...
    def abort(self, reason: str) -> None: ...
    def queue_frame(self, frame: Envelope) -> None: ...
    def queue_error(self, code: ErrorCode, message: str) -> None: ...
    def queue_control(self, framed: bytes) -> None: ...


def next_deadline(conn: Connection) -> float | None:
    """The earliest of the connection's deadlines (None once it is closing)."""
    if conn.closing:
        return None
    config = conn.node.config
    due = conn.next_ping if conn.pong is None else conn.pong.sent + config.heartbeat_timeout
    claims = conn.claims
    if claims is None:
        return min(due, conn.auth_deadline)
    expires_at = conn.trio_time(claims.expires)
    due = min(due, expires_at)
    if conn.warned is not claims:
        due = min(due, expires_at - config.token_expiring_lead)
    return due


def on_timer(conn: Connection, now: float) -> float | None:
    """Acts on every deadline that has come, then returns the next one."""
    if conn.closing:
        return None
    config = conn.node.config
    claims = conn.claims
    if claims is None:
        if now >= conn.auth_deadline:
            conn.close_soon(CloseCode.AUTH_TIMEOUT, "no auth frame within the auth timeout")
            return None
    else:
        expires_at = conn.trio_time(claims.expires)
        if now >= expires_at:
            conn.queue_error(ErrorCode.TOKEN_EXPIRED, "the token expired without a refresh")
            conn.close_soon(CloseCode.TOKEN_EXPIRED, "token expired")
            return None
        if conn.warned is not claims and now >= expires_at - config.token_expiring_lead:
            conn.warned = claims
            left = claims.expires - conn.node.wall_clock()
            conn.queue_frame(
                TokenExpiringFrame(
                    id=new_id(),
                    timestamp=now_ms(),
                    payload=TokenExpiringPayload(expires_at=int(claims.expires * 1000), expires_in=max(0, int(left * 1000))),
                )
            )
    pong = conn.pong
    if pong is None:
        if now >= conn.next_ping:
            conn.pong = waiter = PongWaiter(now)
            try:
                conn.queue_control(conn.transport.ping_frame(waiter))
            except ConnectionClosed:
                conn.close_soon(1006, "connection lost")
                return None
    elif now >= pong.sent + config.heartbeat_timeout:
        if pong.received is not None:
            conn.rtt = pong.received - pong.sent
        elif conn.last_seen < pong.sent:
            conn.abort("heartbeat timeout: no sign of life")
            return None
        conn.next_ping = pong.sent + config.heartbeat_interval
        conn.pong = None
    return next_deadline(conn)
