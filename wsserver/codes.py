"""Close codes and error codes of the wire protocol, each with its meaning and reconnect advice.

The server, the SDKs and the generated protocol docs all read these two enums; nothing else
in the code base spells a close code or an error code as a literal.
"""

from __future__ import annotations

import enum
from typing import Final


class Reconnect(enum.StrEnum):
    """What a client should do after a close code."""

    NEVER = "never"  # do not reconnect (with the same token / frame)
    AT_ONCE = "at_once"  # reconnect immediately, to any node, resubscribing with lastSeq
    BACKOFF = "backoff"  # reconnect with exponential backoff and full jitter
    NEW_TOKEN = "new_token"  # obtain a fresh token from the application first, then reconnect


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server sends (CONTRACT §4)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    AUTH_FAILED = 4001
    TOKEN_EXPIRED = 4002
    FORBIDDEN = 4003
    AUTH_TIMEOUT = 4008
    SLOW_CONSUMER = 4009
    RATE_LIMITED = 4029

    @property
    def meaning(self) -> str:
        return _CLOSE_INFO[self][0]

    @property
    def reconnect(self) -> Reconnect:
        return _CLOSE_INFO[self][1]

    @property
    def advice(self) -> str:
        return _CLOSE_INFO[self][2]


_CLOSE_INFO: Final[dict[CloseCode, tuple[str, Reconnect, str]]] = {
    CloseCode.NORMAL: ("normal closure", Reconnect.NEVER, "do not reconnect"),
    CloseCode.GOING_AWAY: (
        "server going away (shutdown, drain)",
        Reconnect.AT_ONCE,
        "reconnect at once, to any node, and resubscribe with lastSeq",
    ),
    CloseCode.MESSAGE_TOO_BIG: (
        "a frame exceeded maxMessageSize",
        Reconnect.BACKOFF,
        "fix the client; do not retry the same frame (reconnect with backoff is fine)",
    ),
    CloseCode.INTERNAL_ERROR: ("internal server error", Reconnect.BACKOFF, "reconnect with backoff"),
    CloseCode.TRY_AGAIN_LATER: ("server overloaded, try again later", Reconnect.BACKOFF, "reconnect with backoff"),
    CloseCode.AUTH_FAILED: (
        "authentication failed",
        Reconnect.NEW_TOKEN,
        "get a new token from the application first; do not retry with the same token",
    ),
    CloseCode.TOKEN_EXPIRED: (
        "the token expired without a refresh",
        Reconnect.NEW_TOKEN,
        "refresh the token, then reconnect and resubscribe with lastSeq",
    ),
    CloseCode.FORBIDDEN: (
        "forbidden (e.g. `sub` changed on refresh)",
        Reconnect.NEVER,
        "do not reconnect with the same token",
    ),
    CloseCode.AUTH_TIMEOUT: (
        "no `auth` frame within the auth timeout",
        Reconnect.AT_ONCE,
        "reconnect and send `auth` as the first frame",
    ),
    CloseCode.SLOW_CONSUMER: (
        "slow consumer: the outgoing queue overflowed",
        Reconnect.AT_ONCE,
        "reconnect at once and resubscribe with lastSeq; nothing is lost",
    ),
    CloseCode.RATE_LIMITED: ("rate limited", Reconnect.BACKOFF, "reconnect with backoff"),
}


class ErrorCode(enum.StrEnum):
    """`code` values of `error` frames (CONTRACT §3) and of HTTP API errors."""

    BAD_REQUEST = "bad_request"
    UNAUTHENTICATED = "unauthenticated"
    AUTH_FAILED = "auth_failed"
    FORBIDDEN = "forbidden"
    TOKEN_EXPIRED = "token_expired"
    RATE_LIMITED = "rate_limited"
    ALREADY_SUBSCRIBED = "already_subscribed"
    NOT_SUBSCRIBED = "not_subscribed"
    LIMIT_EXCEEDED = "limit_exceeded"
    NOT_FOUND = "not_found"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"

    @property
    def retryable(self) -> bool:
        return _ERROR_INFO[self][0]

    @property
    def meaning(self) -> str:
        return _ERROR_INFO[self][1]

    @property
    def http_status(self) -> int:
        return _ERROR_INFO[self][2]


_ERROR_INFO: Final[dict[ErrorCode, tuple[bool, str, int]]] = {
    ErrorCode.BAD_REQUEST: (False, "the frame or request is malformed or does not fit its schema", 400),
    ErrorCode.UNAUTHENTICATED: (False, "a frame other than `auth`/`ping` arrived before `auth_ok`", 401),
    ErrorCode.AUTH_FAILED: (False, "the token is invalid (signature, algorithm, claims, expiry)", 401),
    ErrorCode.FORBIDDEN: (False, "the token's grants do not allow this channel or action", 403),
    ErrorCode.TOKEN_EXPIRED: (False, "the connection's token expired without a refresh", 401),
    ErrorCode.RATE_LIMITED: (True, "too many frames or bytes; slow down", 429),
    ErrorCode.ALREADY_SUBSCRIBED: (False, "this connection is already subscribed to the channel", 409),
    ErrorCode.NOT_SUBSCRIBED: (False, "this connection is not subscribed to the channel", 409),
    ErrorCode.LIMIT_EXCEEDED: (False, "a configured limit (e.g. channels per connection) was reached", 429),
    ErrorCode.NOT_FOUND: (False, "no such resource", 404),
    ErrorCode.PAYLOAD_TOO_LARGE: (False, "the event or request body is too large", 413),
    ErrorCode.UNAVAILABLE: (True, "storage or backplane unavailable; retry later with the same id", 503),
    ErrorCode.INTERNAL: (True, "internal server error; retry later with the same id", 500),
}
