"""The words the types cannot say: when each frame is sent, what answers it, which errors it can
cause, and the envelope rules of CONTRACT §2, keyed by the server's own frame types and codes.

The catalog refuses a frame without prose here and prose for a frame the server does not have.
"""

from __future__ import annotations

from typing import Final

from attrs import field, frozen

from wsserver.codes import CloseCode, ErrorCode

E = ErrorCode


@frozen
class FrameProse:
    when: str
    answer: str = ""
    errors: tuple[tuple[ErrorCode, str], ...] = ()
    notes: tuple[str, ...] = ()
    field_docs: dict[str, str] = field(factory=dict)  # envelope field docs specific to this frame


_UNAUTH = (E.UNAUTHENTICATED, "sent before `auth_ok`")
_BAD = (E.BAD_REQUEST, "a field is missing, mistyped or out of its constraints (the message names it)")

#: CONTRACT §2, one rule per envelope field, in the contract's order.
ENVELOPE: Final[dict[str, str]] = {
    "type": "Routing key. Control types have no dot (`auth`, `subscribe`, …); application event types "
    "contain a dot (`message.new`, `order.updated`).",
    "id": "UUID v4, unique per sender. For channel events it is the event's own id, the same on every "
    "replay: clients drop duplicates by it.",
    "timestamp": "Milliseconds since the Unix epoch, sender's clock.",
    "payload": "Type-specific object; `{}` when empty.",
    "channel": "Channel events and channel replies: the channel name.",
    "seq": "Channel events: per-channel sequence number, starts at 1, +1 per event, no gaps.",
    "epoch": "Channel events: the generation of the channel's log; it changes when the log was lost or reset.",
    "ref": "Replies and errors: the `id` of the client frame answered.",
}

FRAMES: Final[dict[tuple[str, str], FrameProse]] = {
    ("client", "auth"): FrameProse(
        when="As the first frame of every connection, within the auth timeout (else close "
        f"{int(CloseCode.AUTH_TIMEOUT)}); again on an open connection to refresh the token, "
        "typically on `token_expiring`.",
        answer="`auth_ok` (also for a refresh, with the new `expiresAt`), or `error`.",
        errors=(
            (E.AUTH_FAILED, "invalid token (signature, algorithm, expiry, missing `sub`/`exp`, wrong "
             f"`aud`/`iss`): on the first `auth` the connection is closed with {int(CloseCode.AUTH_FAILED)}; "
             "on a refresh the connection keeps its current token and expiry"),
            (E.FORBIDDEN, f"a refresh with a different `sub`: close {int(CloseCode.FORBIDDEN)}"),
            _BAD,
        ),
        notes=(
            "Frames sent right behind `auth` without waiting for `auth_ok` are answered after it: the "
            "server handles one connection's frames in the order they arrive.",
            "On a refresh, subscriptions the new token's `channels` claim no longer allows are withdrawn "
            "with an unsolicited `unsubscribed` (with `reason`).",
        ),
    ),
    ("client", "subscribe"): FrameProse(
        when="After `auth` (it may be sent right behind it), once per channel; after a reconnect with "
        "the `lastSeq` and `epoch` of the last event the client processed on that channel.",
        answer="`subscribed`, then (per `recovery`) a `snapshot` and/or `replayCount` replayed events, "
        "then live events; or `error`.",
        errors=(
            _UNAUTH,
            (E.FORBIDDEN, "the token's `channels` claim does not allow the channel"),
            (E.ALREADY_SUBSCRIBED, "this connection is already subscribed to the channel"),
            (E.LIMIT_EXCEEDED, "the connection already holds the maximum number of subscriptions"),
            (E.UNAVAILABLE, "storage unavailable; retry later"),
            _BAD,
        ),
    ),
    ("client", "unsubscribe"): FrameProse(
        when="When the client no longer wants a channel's events.",
        answer="`unsubscribed`, also when the connection was not subscribed to the channel.",
        errors=(_UNAUTH, _BAD),
    ),
    ("client", "publish"): FrameProse(
        when="To publish an application event, if the token's `publish` claim allows the channel.",
        answer="`published` with the event's `seq` and `epoch`; or `error`.",
        errors=(
            _UNAUTH,
            (E.FORBIDDEN, "the token's `publish` claim does not allow the channel"),
            (E.UNAVAILABLE, "the event was not stored; resend the same frame (same `id`) later"),
            _BAD,
        ),
        notes=(
            "Idempotent by frame `id`: the same `id` sent again (a retry after a reconnect) gets the "
            "same `published` answer and publishes nothing new. Ids are remembered for at least the "
            "channel's `history_ttl` and are scoped per user.",
            "The frame `id` is only the idempotency key: the published event gets a fresh event id of "
            "its own, which subscribers see as the event's `id`.",
        ),
    ),
    ("client", "ping"): FrameProse(
        when="Any time, also before `auth`, for clients that cannot send WebSocket ping frames or "
        "want an application-level round trip.",
        answer="`pong` with `ref` = the ping's `id`.",
        errors=(_BAD,),
    ),
    ("server", "auth_ok"): FrameProse(
        when="Answer to every accepted `auth`: the first one and every refresh.",
        notes=("`heartbeatInterval` is in ms, `maxMessageSize` in bytes.",),
    ),
    ("server", "token_expiring"): FrameProse(
        when="Once per token, `token_expiring_lead` (default 60 s) before its `exp`. Send a new `auth` "
        f"before `expiresAt`, or the server sends `error` `token_expired` and closes with "
        f"{int(CloseCode.TOKEN_EXPIRED)}.",
    ),
    ("server", "subscribed"): FrameProse(
        when="Answer to `subscribe`, with `ref`. Without `ref` when the server must re-establish a "
        "subscription on its own (e.g. the channel's epoch changed under it): treat it like an "
        "answer and apply its `recovery`.",
        notes=(
            "`replayCount` channel events follow before live ones (after the `snapshot` frame, if any); "
            "on `reset` the client reloads its state from the application.",
        ),
    ),
    ("server", "snapshot"): FrameProse(
        when="Right after `subscribed` with `recovery: snapshot`: the client's lastSeq fell out of the "
        "window, was beyond the head, or its epoch differs, and a stored snapshot exists whose "
        "following events are all still retained. The events after `payload.seq` follow.",
    ),
    ("server", "event"): FrameProse(
        when="Replayed after `subscribed` (`replayCount` of them) and then live, for every event "
        "published to a subscribed channel. Across the replay/live boundary: no gap, no duplicate, "
        "in order.",
        notes=(
            "`id` is the event's own id, identical on every replay: drop duplicates by it (and by `seq`).",
            "`timestamp` is the time the event was published.",
            "Remember `seq` and `epoch` per channel: they are the `lastSeq`/`epoch` of the next `subscribe`.",
        ),
        field_docs={
            "id": "the event's own id: unique per event, identical on every replay (drop duplicates by it)",
            "timestamp": "when the event was published, ms since the Unix epoch",
            "seq": "per-channel sequence number: starts at 1, +1 per event, no gaps",
            "epoch": "the generation of the channel's log this seq belongs to",
            "channel": "the channel the event was published to",
        },
    ),
    ("server", "unsubscribed"): FrameProse(
        when="Answer to `unsubscribe` (with `ref`); or, without `ref` and with `reason`, when the server "
        "withdrew the subscription (e.g. a refreshed token no longer allows it).",
    ),
    ("server", "published"): FrameProse(
        when="Answer to `publish`; for a repeated frame `id` the original `seq` and `epoch`.",
    ),
    ("server", "pong"): FrameProse(when="Answer to `ping`."),
    ("server", "error"): FrameProse(
        when="Any refused frame; `ref` names it when its id could be read. The connection stays open "
        "unless a close follows (see the close codes).",
        notes=(
            "`retryable` says whether sending the same frame again later may succeed. Treat an unknown "
            "`code` by its `retryable` flag.",
        ),
    ),
}
