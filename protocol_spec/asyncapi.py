"""AsyncAPI 3.0 document of the `/ws` channel, seen from the server: every client frame is a
`receive` operation (with its possible replies), every server frame a `send` operation."""

from __future__ import annotations

from typing import Any, Final

from protocol_spec.catalog import Catalog, FrameDoc
from protocol_spec.jsonschema import GENERATED

CHANNEL: Final = "ws"

#: Replies each client frame can get, by wire type (the Markdown docs say when).
REPLIES: Final[dict[str, tuple[str, ...]]] = {
    "auth": ("auth_ok", "error"),
    "subscribe": ("subscribed", "snapshot", "event", "error"),
    "unsubscribe": ("unsubscribed", "error"),
    "publish": ("published", "error"),
    "ping": ("pong", "error"),
}


def _operation_id(frame: FrameDoc) -> str:
    verb = "receive" if frame.direction == "client" else "send"
    return verb + "".join(part.title() for part in frame.slug.split("_"))


def _message(frame: FrameDoc) -> dict[str, Any]:
    description = frame.when
    if frame.answer:
        description += f"\n\nAnswer: {frame.answer}"
    if frame.errors:
        description += "\n\nErrors: " + "; ".join(f"`{e.code.value}` — {e.when}" for e in frame.errors)
    return {
        "name": frame.slug,
        "title": frame.slug if frame.type != "<event>" else "application event",
        "summary": frame.purpose,
        "description": description,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{frame.direction}.{frame.slug}"},
        "examples": [
            {"name": f"example{i + 1}", "summary": ex.title, "payload": ex.frame} for i, ex in enumerate(frame.examples)
        ],
    }


def _schema(frame: FrameDoc) -> dict[str, Any]:
    return {k: v for k, v in frame.schema.items() if k != "examples"}


def render(catalog: Catalog) -> dict[str, Any]:
    channel_ref = {"$ref": f"#/channels/{CHANNEL}"}
    operations: dict[str, Any] = {}
    for frame in catalog.frames:
        op: dict[str, Any] = {
            "action": "receive" if frame.direction == "client" else "send",
            "channel": channel_ref,
            "title": f"{'Client sends' if frame.direction == 'client' else 'Server sends'} `{frame.slug}`",
            "summary": frame.purpose,
            "description": frame.when,
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{frame.slug}"}],
        }
        if frame.direction == "client":
            op["reply"] = {
                "channel": channel_ref,
                "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{name}"} for name in REPLIES[frame.slug]],
            }
        operations[_operation_id(frame)] = op
    return {
        "asyncapi": "3.0.0",
        "x-generated": GENERATED,
        "info": {
            "title": "wsserver WebSocket protocol",
            "version": catalog.version,
            "description": "JSON text frames over one WebSocket per client. Every channel event carries a "
            "per-channel `seq` and an `epoch`; a client that resubscribes with `lastSeq` gets exactly what "
            "it missed, in order, once (or a snapshot, or a reset). The full rules, the recovery table and "
            "the close codes are in protocol.md.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "public": {
                "host": "{host}:{port}",
                "protocol": "ws",
                "description": "The public WebSocket port (`wss` when a certificate is configured).",
                "variables": {
                    "host": {"default": "localhost", "description": "server host name"},
                    "port": {"default": "8080", "description": "WebSocket port (configuration key `port`)"},
                },
            }
        },
        "channels": {
            CHANNEL: {
                "address": "/ws",
                "title": "The WebSocket endpoint",
                "description": "One connection carries every subscribed channel. The first frame must be `auth`.",
                "servers": [{"$ref": "#/servers/public"}],
                "messages": {f.slug: {"$ref": f"#/components/messages/{f.slug}"} for f in catalog.frames},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "token": {
                                    "type": "string",
                                    "description": "the JWT, accepted only when `allow_query_token` is "
                                    "configured (an `auth` frame is the default)",
                                }
                            },
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
            }
        },
        "operations": operations,
        "components": {
            "schemas": {f"{f.direction}.{f.slug}": _schema(f) for f in catalog.frames},
            "messages": {f.slug: _message(f) for f in catalog.frames},
        },
    }
