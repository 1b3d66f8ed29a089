"""Bodies of the internal HTTP API (CONTRACT §5) as attrs classes, next to the wire protocol's:
requests are structured and refused by the protocol's converter (clear 400s naming the field),
responses unstructured by it. The API server, the admin console and the protocol docs share them,
without importing the HTTP server itself."""

from __future__ import annotations

from typing import Any, Final

from attrs import field, frozen

from wsserver.protocol import MAX_ID_LENGTH, _valid_channel, _valid_event_type

#: Most events one history call returns.
MAX_HISTORY_LIMIT: Final = 1000
DEFAULT_HISTORY_LIMIT: Final = 100
#: What an API caller is told when storage fails (the details go to the log, never to callers).
STORAGE_UNAVAILABLE: Final = "event storage is unavailable right now; retry later (a publish with the same id)"


def _valid_id(_inst: object, _attr: object, value: str | None) -> None:
    if value is not None and not 0 < len(value) <= MAX_ID_LENGTH:
        raise ValueError(f"id must be 1-{MAX_ID_LENGTH} characters")


def _valid_close_code(_inst: object, _attr: object, value: int) -> None:
    if not (value in (1000, 1001, 1008, 1011, 1013) or 3000 <= value <= 4999):
        raise ValueError("code must be 1000, 1001, 1008, 1011, 1013 or 3000-4999")


@frozen
class PublishRequest:
    """`POST /api/v1/publish`: `id` makes the publish idempotent (same id → same answer)."""

    channel: str = field(validator=_valid_channel)
    event: str = field(validator=_valid_event_type)
    data: dict[str, Any]
    id: str | None = field(default=None, validator=_valid_id)


@frozen
class PublishResponse:
    channel: str
    seq: int
    epoch: str
    id: str


@frozen
class SnapshotRequest:
    """`PUT /api/v1/channels/{channel}/snapshot`: the application state as of `seq`."""

    state: dict[str, Any]
    seq: int


@frozen
class ChannelInfo:
    channel: str
    epoch: str
    head_seq: int
    oldest_seq: int
    subscribers: int


@frozen
class DisconnectRequest:
    """`POST /api/v1/disconnect`: by `userId` (every connection of it) or `connectionId`."""

    code: int = field(validator=_valid_close_code)
    user_id: str | None = None
    connection_id: str | None = None
    reason: str = ""


@frozen
class DisconnectResponse:
    disconnected: int


@frozen
class ApiErrorBody:
    code: str
    message: str


@frozen
class ApiError:
    error: ApiErrorBody


@frozen
class Health:
    """`/healthz` body: `ok` while serving; `draining` or `unhealthy` (status 503) with the reason."""

    status: str
    node_id: str
    reason: str | None = None
