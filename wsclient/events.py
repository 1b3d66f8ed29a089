"""What the client tells the application: connection states and the events it delivers,
one stream of frozen attrs objects read from ``Client.events`` in the order they happened."""

from __future__ import annotations

import enum
from typing import Any

from attrs import frozen

from wsclient.codes import Reconnect


class ConnectionState(enum.StrEnum):
    """The client's connection state (``Client.state``)."""

    CONNECTING = "connecting"  # opening a link and authenticating
    CONNECTED = "connected"  # `auth_ok` received; subscriptions are being (re)established
    RECONNECTING = "reconnecting"  # the link ended; waiting ``delay`` before the next attempt
    CLOSED = "closed"  # final: closed by the app, by a NEVER close code, or the SDK gave up


class TokenReason(enum.StrEnum):
    """Why the client asks the application's token provider for a token."""

    CONNECT = "connect"  # a new connection is about to authenticate
    EXPIRING = "expiring"  # the server sent `token_expiring`: refresh in-band on this connection
    REJECTED = "rejected"  # the last connection ended with 4001/4002: a new token is needed


@frozen
class Connecting:
    """A connection attempt starts (``attempt`` 0 is the first since the last success)."""

    attempt: int


@frozen
class Connected:
    """The server accepted the token (`auth_ok`)."""

    session_id: str
    user_id: str
    heartbeat_interval: float  # seconds


@frozen
class Reconnecting:
    """The link ended with ``code``; the next attempt starts after ``delay`` seconds."""

    attempt: int
    delay: float
    code: int
    reason: str
    advice: Reconnect


@frozen
class Closed:
    """Final state: the client will not reconnect."""

    code: int
    reason: str


@frozen
class Live:
    """Every subscribed channel finished its recovery on this connection: the app is caught up.

    ``catch_up`` is seconds from the start of this connection attempt, ``downtime`` seconds
    since the previous link was lost (or since the client started)."""

    catch_up: float
    downtime: float


@frozen
class Subscribed:
    """The server (re)established a subscription; ``mode`` is `replay`, `snapshot`, `reset` or `none`."""

    channel: str
    mode: str
    epoch: str
    head_seq: int
    replay_count: int


@frozen
class Snapshot:
    """Replace the channel's state with ``state``, as of ``seq``; events after ``seq`` follow."""

    channel: str
    epoch: str
    seq: int
    state: dict[str, Any]


@frozen
class Reset:
    """The channel's missed events are gone and no snapshot exists: reload its state from the
    application's backend. Live events after ``head_seq`` follow."""

    channel: str
    epoch: str
    head_seq: int


@frozen
class ChannelEvent:
    """One application event, delivered once, in seq order."""

    channel: str
    seq: int
    epoch: str
    id: str
    type: str
    payload: dict[str, Any]
    timestamp: int


@frozen
class Unsubscribed:
    """The subscription ended: the app asked (``reason`` None) or the server withdrew it."""

    channel: str
    reason: str | None


@frozen
class ServerError:
    """The server refused a frame the SDK sent (not a publish: those raise from ``publish``)."""

    code: str
    message: str
    channel: str | None


ClientEvent = (
    Connecting | Connected | Reconnecting | Closed | Live | Subscribed | Snapshot | Reset | ChannelEvent
    | Unsubscribed | ServerError
)
