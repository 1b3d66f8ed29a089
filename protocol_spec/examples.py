"""Hand-written JSON examples of every frame, as a client developer would see them on the wire.

They are data, not derived: the tests decode each with the server's own converter and validate it
against the generated JSON Schema, so an example that drifts from the server fails the build.
"""

from __future__ import annotations

from typing import Any, Final

_T = 1767225600000  # 2026-01-01T00:00:00Z in ms
_EPOCH = "r7Kq2w"

EXAMPLES: Final[dict[tuple[str, str], list[tuple[str, dict[str, Any]]]]] = {
    ("client", "auth"): [
        (
            "first frame of a connection",
            {
                "type": "auth",
                "id": "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f",
                "timestamp": _T,
                "payload": {"token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"},
            },
        )
    ],
    ("client", "subscribe"): [
        (
            "live events only",
            {
                "type": "subscribe",
                "id": "0b9e8f6a-1c2d-4e3f-9a8b-7c6d5e4f3a2b",
                "timestamp": _T + 5,
                "payload": {"channel": "room:42"},
            },
        ),
        (
            "after a reconnect: recover what was missed after seq 17",
            {
                "type": "subscribe",
                "id": "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
                "timestamp": _T + 60000,
                "payload": {"channel": "room:42", "lastSeq": 17, "epoch": _EPOCH},
            },
        ),
    ],
    ("client", "unsubscribe"): [
        (
            "leave a channel",
            {
                "type": "unsubscribe",
                "id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
                "timestamp": _T + 90000,
                "payload": {"channel": "room:42"},
            },
        )
    ],
    ("client", "publish"): [
        (
            "publish an application event (resend with the same id after a reconnect)",
            {
                "type": "publish",
                "id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                "timestamp": _T + 7000,
                "payload": {"channel": "room:42", "event": "message.new", "data": {"text": "hello"}},
            },
        )
    ],
    ("client", "ping"): [
        (
            "application-level ping",
            {"type": "ping", "id": "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6", "timestamp": _T + 30000, "payload": {}},
        )
    ],
    ("server", "auth_ok"): [
        (
            "answer to the first auth",
            {
                "type": "auth_ok",
                "id": "2f3e4d5c-6b7a-4899-8a7b-6c5d4e3f2a1b",
                "timestamp": _T + 2,
                "ref": "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f",
                "payload": {
                    "sessionId": "a3f9c2e17b4d8e60",
                    "userId": "alice",
                    "expiresAt": _T + 3600000,
                    "heartbeatInterval": 25000,
                    "maxMessageSize": 65536,
                },
            },
        )
    ],
    ("server", "token_expiring"): [
        (
            "60 s before the token's exp",
            {
                "type": "token_expiring",
                "id": "3a4b5c6d-7e8f-4091-a2b3-c4d5e6f7a8b9",
                "timestamp": _T + 3540000,
                "payload": {"expiresAt": _T + 3600000, "expiresIn": 60000},
            },
        )
    ],
    ("server", "subscribed"): [
        (
            "recovery by replay: 3 missed events follow",
            {
                "type": "subscribed",
                "id": "4b5c6d7e-8f90-4a1b-b2c3-d4e5f6a7b8c9",
                "timestamp": _T + 60003,
                "ref": "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
                "channel": "room:42",
                "payload": {"channel": "room:42", "epoch": _EPOCH, "headSeq": 20, "recovery": "replay", "replayCount": 3},
            },
        ),
        (
            "live only (no lastSeq)",
            {
                "type": "subscribed",
                "id": "5c6d7e8f-9012-4b3c-8d4e-5f6a7b8c9d0e",
                "timestamp": _T + 8,
                "ref": "0b9e8f6a-1c2d-4e3f-9a8b-7c6d5e4f3a2b",
                "channel": "room:42",
                "payload": {"channel": "room:42", "epoch": _EPOCH, "headSeq": 17, "recovery": "none", "replayCount": 0},
            },
        ),
        (
            "unsolicited (no ref): the server re-established the subscription after an epoch change",
            {
                "type": "subscribed",
                "id": "6d7e8f90-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
                "timestamp": _T + 120000,
                "channel": "room:42",
                "payload": {"channel": "room:42", "epoch": "n3Wz8p", "headSeq": 0, "recovery": "reset", "replayCount": 0},
            },
        ),
    ],
    ("server", "snapshot"): [
        (
            "state as of seq 9000; events 9001… follow",
            {
                "type": "snapshot",
                "id": "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b",
                "timestamp": _T - 5000,
                "channel": "room:42",
                "epoch": _EPOCH,
                "payload": {"state": {"members": ["alice", "bob"], "topic": "launch"}, "seq": 9000},
            },
        )
    ],
    ("server", "event"): [
        (
            "an application event (replayed or live)",
            {
                "type": "message.new",
                "id": "8f9a0b1c-2d3e-4f5a-9b6c-7d8e9f0a1b2c",
                "timestamp": _T + 7001,
                "channel": "room:42",
                "seq": 18,
                "epoch": _EPOCH,
                "payload": {"text": "hello"},
            },
        )
    ],
    ("server", "unsubscribed"): [
        (
            "answer to unsubscribe",
            {
                "type": "unsubscribed",
                "id": "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
                "timestamp": _T + 90001,
                "ref": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
                "channel": "room:42",
                "payload": {"channel": "room:42"},
            },
        ),
        (
            "withdrawn by the server after a token refresh",
            {
                "type": "unsubscribed",
                "id": "0b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e",
                "timestamp": _T + 3500000,
                "channel": "room:42",
                "payload": {"channel": "room:42", "reason": "the refreshed token no longer grants this channel"},
            },
        ),
    ],
    ("server", "published"): [
        (
            "answer to publish",
            {
                "type": "published",
                "id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                "timestamp": _T + 7002,
                "ref": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                "channel": "room:42",
                "payload": {"channel": "room:42", "seq": 18, "epoch": _EPOCH},
            },
        )
    ],
    ("server", "pong"): [
        (
            "answer to ping",
            {
                "type": "pong",
                "id": "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a",
                "timestamp": _T + 30001,
                "ref": "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6",
                "payload": {},
            },
        )
    ],
    ("server", "error"): [
        (
            "a refused subscribe",
            {
                "type": "error",
                "id": "3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b",
                "timestamp": _T + 6,
                "ref": "0b9e8f6a-1c2d-4e3f-9a8b-7c6d5e4f3a2b",
                "payload": {
                    "code": "forbidden",
                    "message": "the token does not grant channel 'room:42'",
                    "retryable": False,
                },
            },
        ),
        (
            "a malformed frame",
            {
                "type": "error",
                "id": "4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c",
                "timestamp": _T + 9,
                "ref": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d",
                "payload": {
                    "code": "bad_request",
                    "message": "invalid subscribe frame: payload.lastSeq: expected integer, got string",
                    "retryable": False,
                },
            },
        ),
    ],
}
