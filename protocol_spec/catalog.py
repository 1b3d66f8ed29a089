"""A neutral description of the protocol (frames, fields, codes, configuration, HTTP API) built by
introspecting the very attrs classes and enums the server uses; every generator reads only this.

Nothing here restates a type: field names, types, optionality and docs come from ``wsserver``;
what the types cannot say (validator constraints, prose, examples) is keyed by the server's own
objects, so a renamed field, a new frame or a new validator without a description fails loudly.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Callable, Final, Literal

import attrs
from attrs import frozen

from protocol_spec import examples as examples_mod
from protocol_spec import prose
from wsserver import api_types, protocol, stats
from wsserver.codes import CloseCode, ErrorCode
from wsserver.config import OPTION_FIELDS, Config, env_name, flag_name

#: Version of the wire protocol these docs describe (CONTRACT v1); not the package version, so a
#: release bump does not count as documentation drift.
PROTOCOL_VERSION: Final = "1.0.0"

Direction = Literal["client", "server"]


class CatalogError(Exception):
    """The server's types contain something the docs cannot describe yet (say what to add)."""


# --------------------------------------------------------------------------- model


@frozen
class FieldDoc:
    """One wire field: its camelCase name, JSON Schema, whether it must be present, and prose."""

    name: str
    schema: dict[str, Any]
    required: bool
    doc: str
    nullable: bool = False

    @property
    def type_label(self) -> str:
        return _type_label(self.schema) + (" or null" if self.nullable else "")

    @property
    def constraints(self) -> str:
        return _constraint_text(self.schema)


@frozen
class ErrorCause:
    code: ErrorCode
    when: str


@frozen
class Example:
    title: str
    frame: dict[str, Any]


@frozen
class FrameDoc:
    """One frame type in one direction."""

    type: str  # wire `type`; "<event>" for application events
    direction: Direction
    class_name: str
    purpose: str
    when: str
    answer: str
    errors: tuple[ErrorCause, ...]
    notes: tuple[str, ...]
    envelope: tuple[FieldDoc, ...]
    payload: tuple[FieldDoc, ...]
    payload_doc: str
    examples: tuple[Example, ...]
    schema: dict[str, Any]  # JSON Schema of the whole frame (no $schema/$id; generators add them)

    @property
    def slug(self) -> str:
        return "event" if self.type == protocol.EventFrame.TYPE else self.type


@frozen
class CloseDoc:
    code: int
    name: str
    meaning: str
    reconnect: str
    advice: str


@frozen
class ErrorDoc:
    code: str
    meaning: str
    retryable: bool
    http_status: int


@frozen
class OptionDoc:
    key: str
    flag: str
    env: str
    kind: str
    default: str
    help: str


@frozen
class HttpParam:
    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    required: bool
    doc: str


@frozen
class HttpCall:
    method: str
    path: str
    summary: str
    description: str
    auth: bool
    params: tuple[HttpParam, ...]
    request: str | None  # model name in Catalog.models
    responses: tuple[tuple[int, str, str | None, str], ...]  # (status, description, model or None, media type)


@frozen
class Catalog:
    version: str
    client_frames: tuple[FrameDoc, ...]
    server_frames: tuple[FrameDoc, ...]
    envelope: tuple[FieldDoc, ...]
    close_codes: tuple[CloseDoc, ...]
    error_codes: tuple[ErrorDoc, ...]
    options: tuple[OptionDoc, ...]
    http_calls: tuple[HttpCall, ...]
    models: dict[str, dict[str, Any]]  # HTTP API body schemas by class name ($ref: #/components/schemas/X)
    defaults: dict[str, Any]  # protocol-relevant configuration defaults, in wire units

    @property
    def frames(self) -> tuple[FrameDoc, ...]:
        return self.client_frames + self.server_frames

    def frame(self, type_: str, direction: Direction | None = None) -> FrameDoc:
        for frame in self.frames:
            if frame.type == type_ and (direction is None or frame.direction == direction):
                return frame
        raise KeyError(type_)


# --------------------------------------------------------------------------- introspection

def _full_match(regex: str) -> str:
    """A JSON Schema `pattern` that matches the whole string in ECMA-262 and Python alike
    (Python's `$` also matches before a trailing newline, so the end is a lookahead)."""
    return f"^(?:{regex})(?![\\s\\S])"


_CHANNEL: Final = {
    "type": "string",
    "pattern": _full_match(protocol.CHANNEL_RE.pattern),
    "maxLength": protocol.MAX_CHANNEL_LENGTH,
}
_EVENT_TYPE: Final = {
    "type": "string",
    "pattern": _full_match(protocol.EVENT_TYPE_RE.pattern),
    "maxLength": protocol.MAX_EVENT_TYPE_LENGTH,
}
_ID: Final = {"minLength": 1, "maxLength": protocol.MAX_ID_LENGTH}

#: What each server validator enforces, as JSON Schema keywords. A validator missing here is a
#: CatalogError: the docs must never silently under-describe what the server refuses.
_VALIDATORS: Final[dict[Callable[..., Any], dict[str, Any]]] = {
    protocol._valid_channel: _CHANNEL,
    protocol._valid_event_type: _EVENT_TYPE,
    protocol._non_negative: {"minimum": 0},
    protocol._check_id: _ID,
    api_types._valid_id: _ID,
    api_types._valid_close_code: {
        "anyOf": [{"enum": [1000, 1001, 1008, 1011, 1013]}, {"minimum": 3000, "maximum": 4999}]
    },
}

#: Constraints that hold by construction on server-sent fields (the server only sends names it
#: accepted, counts and times that are never negative), keyed by wire name.
_SERVER_FIELD_FACTS: Final[dict[str, dict[str, Any]]] = {
    "channel": _CHANNEL,
    "id": _ID,
    "ref": _ID,
    "timestamp": {"minimum": 0},
    "seq": {"minimum": 0},
    "headSeq": {"minimum": 0},
    "replayCount": {"minimum": 0},
    "expiresAt": {"minimum": 0},
    "expiresIn": {"minimum": 0},
    "heartbeatInterval": {"minimum": 0},
    "maxMessageSize": {"minimum": 1},
}

#: What the annotation cannot express about one attribute (closed value sets, tighter bounds),
#: keyed by (class, attribute).
_FIELD_FACTS: Final[dict[tuple[type, str], dict[str, Any]]] = {
    (protocol.SubscribedPayload, "recovery"): {"enum": list(protocol.Recovery.ALL)},
    (protocol.ErrorPayload, "code"): {"enum": [code.value for code in ErrorCode]},
    (protocol.EventFrame, "seq"): {"minimum": 1},
}

#: Field docs the payload classes leave out (they repeat an envelope field or a neighbour).
_FALLBACK_DOCS: Final[dict[str, str]] = {
    "channel": "channel name",
    "seq": "the event's per-channel sequence number",
    "epoch": "the channel log's epoch",
    "payload": "type-specific object; `{}` when empty",
    "type": "the frame type (routing key)",
}


def _validator_schema(attribute: attrs.Attribute) -> dict[str, Any]:
    validator = attribute.validator
    if validator is None:
        return {}
    parts = list(getattr(validator, "_validators", [validator]))
    schema: dict[str, Any] = {}
    for part in parts:
        if part not in _VALIDATORS:
            raise CatalogError(
                f"{attribute.name}: validator {getattr(part, '__qualname__', part)!r} has no JSON Schema "
                "description; add it to protocol_spec.catalog._VALIDATORS"
            )
        schema.update(_VALIDATORS[part])
    return schema


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != len(typing.get_args(tp)):
            if len(args) != 1:
                raise CatalogError(f"unsupported union {tp!r}")
            return True, args[0]
    return False, tp


ModelRef = Callable[[type], dict[str, Any]]


def type_schema(tp: Any, model: ModelRef) -> dict[str, Any]:
    """JSON Schema of a Python annotation as the protocol converter maps it to JSON."""
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp == dict[str, Any]:
        return {"type": "object"}
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (item, *rest) = typing.get_args(tp)
        return {"type": "array", "items": type_schema(item, model)}
    if attrs.has(tp):
        return model(tp)
    raise CatalogError(f"no JSON Schema mapping for annotation {tp!r}")


def fields_of(cls: type, direction: Direction, model: ModelRef) -> list[FieldDoc]:
    """Wire fields of an attrs class in the order the converter writes them.

    ``direction`` says who produces the JSON: a client field is required when it has no default
    (cattrs structures it so); a server field is absent only when its default is None and it is
    None (the converter omits exactly those).
    """
    hints = typing.get_type_hints(cls)
    result = []
    for a in attrs.fields(cls):
        optional, inner = _is_optional(hints[a.name])
        wire = protocol._camel(a.name)
        schema = type_schema(inner, model)
        schema.update(_validator_schema(a))
        if direction == "server":
            for key, value in _SERVER_FIELD_FACTS.get(wire, {}).items():
                if schema.get("type") in ("string", "integer") and key not in schema:
                    schema[key] = value
        schema.update(_FIELD_FACTS.get((cls, a.name), {}))
        if direction == "client":
            required = a.default is attrs.NOTHING
            nullable = False
        else:
            required = a.default is not None
            nullable = optional and required
        doc = a.metadata.get("doc") or _FALLBACK_DOCS.get(wire, "")
        result.append(FieldDoc(name=wire, schema=schema, required=required, doc=doc, nullable=nullable))
    return result


def object_schema(fields: list[FieldDoc] | tuple[FieldDoc, ...], description: str = "") -> dict[str, Any]:
    props = {}
    for f in fields:
        schema = dict(f.schema)
        if f.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        if f.doc:
            schema = {"description": f.doc, **schema}
        props[f.name] = schema
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out["properties"] = props
    required = [f.name for f in fields if f.required]
    if required:
        out["required"] = required
    return out


def _inline(direction: Direction) -> ModelRef:
    def model(cls: type) -> dict[str, Any]:
        return object_schema(fields_of(cls, direction, model), _first_paragraph(cls.__doc__))

    return model


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _frame(cls: type[protocol.Envelope], direction: Direction) -> FrameDoc:
    model = _inline(direction)
    key = "event" if cls is protocol.EventFrame else cls.TYPE
    text = prose.FRAMES.get((direction, key))
    if text is None:
        raise CatalogError(f"frame {key!r} ({direction}) has no prose in protocol_spec.prose.FRAMES")
    all_fields = [
        attrs.evolve(f, doc=text.field_docs[f.name]) if f.name in text.field_docs else f
        for f in fields_of(cls, direction, model)
    ]
    payload_cls = typing.get_type_hints(cls)["payload"]
    envelope = [f for f in all_fields if f.name != "payload"]
    payload_field = next(f for f in all_fields if f.name == "payload")
    payload = fields_of(payload_cls, direction, model) if attrs.has(payload_cls) else []
    is_event = cls is protocol.EventFrame
    type_field = (
        {"description": "application event type: contains a dot", **_EVENT_TYPE}
        if is_event
        else {"description": "the frame type (discriminator)", "const": cls.TYPE}
    )
    body = object_schema(envelope, "")
    props = {"type": type_field, **{k: v for k, v in body["properties"].items() if k != "type"}}
    payload_schema = dict(payload_field.schema)
    if is_event:
        payload_schema["description"] = "the published `data` object"
    props["payload"] = payload_schema
    required = ["type", *[f.name for f in envelope if f.required and f.name != "type"]]
    if payload_field.required:
        required.append("payload")
    purpose = _first_paragraph(cls.__doc__)
    schema = {
        "title": f"{cls.TYPE if not is_event else 'application event'} ({direction} → "
        f"{'server' if direction == 'client' else 'client'})",
        "description": purpose,
        "type": "object",
        "properties": props,
        "required": required,
    }
    frame_examples = examples_mod.EXAMPLES.get((direction, key))
    if not frame_examples:
        raise CatalogError(f"frame {key!r} ({direction}) has no example in protocol_spec.examples.EXAMPLES")
    schema["examples"] = [ex for _title, ex in frame_examples]
    env_fields = tuple(
        f for f in envelope if f.name != "type"
    )
    if is_event:
        env_fields = (FieldDoc("type", _EVENT_TYPE, True, "application event type: contains a dot"), *env_fields)
    return FrameDoc(
        type=cls.TYPE,
        direction=direction,
        class_name=cls.__name__,
        purpose=purpose,
        when=text.when,
        answer=text.answer,
        errors=tuple(ErrorCause(code, why) for code, why in text.errors),
        notes=tuple(text.notes),
        envelope=env_fields,
        payload=tuple(payload),
        payload_doc=_first_paragraph(payload_cls.__doc__) if attrs.has(payload_cls) else "",
        examples=tuple(Example(title, ex) for title, ex in frame_examples),
        schema=schema,
    )


def _default_text(a: attrs.Attribute) -> str:
    value = a.default
    kind = a.metadata["kind"]
    if value is None or value == ():
        return "none"
    if kind == "duration":
        seconds = float(value)
        for unit, size in (("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"{int(seconds // size)}{unit}"
        return f"{seconds:g}s"
    if kind == "bool":
        return "true" if value else "false"
    return str(value)


def _options() -> tuple[OptionDoc, ...]:
    return tuple(
        OptionDoc(
            key=a.name,
            flag=flag_name(a.name),
            env=env_name(a.name),
            kind=a.metadata["kind"],
            default=_default_text(a),
            help=a.metadata["help"],
        )
        for a in OPTION_FIELDS
    )


# --------------------------------------------------------------------------- HTTP API


_HTTP_MODELS: Final = (
    api_types.PublishRequest,
    api_types.PublishResponse,
    api_types.SnapshotRequest,
    api_types.ChannelInfo,
    api_types.DisconnectRequest,
    api_types.DisconnectResponse,
    api_types.ApiError,
    api_types.Health,
    stats.Stats,
)

# Directions for the HTTP bodies: requests are parsed like client frames, answers written like
# server frames.
_HTTP_DIRECTION: Final[dict[type, Direction]] = {
    api_types.PublishRequest: "client",
    api_types.SnapshotRequest: "client",
    api_types.DisconnectRequest: "client",
}


def _http_models() -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}

    def add(cls: type, direction: Direction) -> dict[str, Any]:
        def ref(inner: type) -> dict[str, Any]:
            add(inner, direction)
            return {"$ref": f"#/components/schemas/{inner.__name__}"}

        if cls.__name__ not in models:
            models[cls.__name__] = {}  # placeholder against recursion
            models[cls.__name__] = object_schema(fields_of(cls, direction, ref), _first_paragraph(cls.__doc__))
        return models[cls.__name__]

    for cls in _HTTP_MODELS:
        add(cls, _HTTP_DIRECTION.get(cls, "server"))
    models["History"] = {
        "type": "object",
        "description": "channel events in their wire form (CONTRACT §2), oldest first",
        "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/EventFrame"}}},
        "required": ["events"],
    }
    return models


def _channel_param() -> HttpParam:
    return HttpParam("channel", "path", dict(_CHANNEL), True, "channel name")


def _http_calls() -> tuple[HttpCall, ...]:
    err = "ApiError"
    json = "application/json"
    unauthorised = (401, "missing or wrong API key", err, json)
    bad = (400, "malformed body or parameter (the message names the field)", err, json)
    return (
        HttpCall(
            "POST", "/api/v1/publish", "Publish an event to a channel",
            "The event reaches subscribers as a frame whose `type` is the request's `event` and whose "
            "`payload` is its `data`; with an `id`, that is the event's id. The same `id` again returns the "
            "same answer and stores nothing new.",
            True, (), "PublishRequest",
            ((200, "published (or the stored answer for a repeated id)", "PublishResponse", json), bad,
             unauthorised, (413, "body too large (refused while it streams, before it is read whole)", err, json),
             (503, "storage unavailable: retry with the same id (the message says so in plain words)", err, json)),
        ),
        HttpCall(
            "PUT", "/api/v1/channels/{channel}/snapshot", "Store a channel snapshot",
            "The application state as of `seq`; offered to subscribers whose lastSeq fell out of the window.",
            True, (_channel_param(),), "SnapshotRequest",
            ((204, "stored", None, json), bad, unauthorised, (409, "`seq` is beyond the channel head", err, json)),
        ),
        HttpCall(
            "GET", "/api/v1/channels/{channel}", "Channel position",
            "A channel never published to answers 200 with `headSeq` 0.",
            True, (_channel_param(),), None,
            ((200, "the channel's position", "ChannelInfo", json), bad, unauthorised),
        ),
        HttpCall(
            "GET", "/api/v1/channels/{channel}/history", "Stored events after a seq",
            "Events with seq > `after`, oldest first, at most `limit`, in the wire form of the WebSocket frames.",
            True,
            (
                _channel_param(),
                HttpParam("after", "query", {"type": "integer", "minimum": 0, "default": 0}, False,
                          "return events with a seq greater than this"),
                HttpParam("limit", "query",
                          {"type": "integer", "minimum": 1, "maximum": api_types.MAX_HISTORY_LIMIT,
                           "default": api_types.DEFAULT_HISTORY_LIMIT}, False, "most events returned"),
            ),
            None,
            ((200, "the events", "History", json), bad, unauthorised),
        ),
        HttpCall(
            "POST", "/api/v1/disconnect", "Close connections",
            "Closes every connection of `userId`, or the one `connectionId`, with `code` and `reason`.",
            True, (), "DisconnectRequest",
            ((200, "how many connections are closing", "DisconnectResponse", json), bad, unauthorised),
        ),
        HttpCall(
            "GET", "/api/v1/stats", "Node, connection and channel statistics",
            "What the admin console shows: nodes, connections (each with its subscriptions and their "
            "seq lag) and channels.",
            True, (), None, ((200, "statistics", "Stats", json), unauthorised),
        ),
        HttpCall("GET", "/healthz", "Health",
                 "200 while serving; 503 with the reason while draining or while the node cannot accept publishes "
                 "(its store refuses writes, e.g. a full disk; Redis unreachable; the backplane not delivering). "
                 "It turns back to 200 by itself once the cause is gone.", False, (), None,
                 ((200, "serving", "Health", json), (503, "draining or unhealthy", "Health", json))),
        HttpCall("GET", "/metrics", "Prometheus metrics", "Prometheus text exposition format.", False, (), None,
                 ((200, "metrics", None, "text/plain; version=0.0.4"),)),
    )


# --------------------------------------------------------------------------- build


def build_catalog() -> Catalog:
    """Introspects the server's types into a Catalog (pure; raises CatalogError on a gap)."""
    client = tuple(_frame(cls, "client") for cls in protocol.CLIENT_FRAMES.values())
    server = tuple(_frame(cls, "server") for cls in protocol.SERVER_FRAMES)
    extra = set(prose.FRAMES) - {(f.direction, f.slug) for f in client + server}
    if extra:
        raise CatalogError(f"prose for frames the server does not have: {sorted(extra)}")
    by_name = {f.name: f for f in fields_of(protocol.EventFrame, "server", _inline("server"))}
    by_name.update({f.name: f for f in fields_of(protocol.Reply, "server", _inline("server"))})
    by_name["type"] = FieldDoc("type", {"type": "string"}, True, "")
    missing = set(prose.ENVELOPE) - set(by_name)
    if missing:
        raise CatalogError(f"envelope fields documented but not in the frame types: {sorted(missing)}")
    envelope = tuple(
        attrs.evolve(by_name[name], doc=rule, required=name in ("type", "id", "timestamp", "payload"))
        for name, rule in prose.ENVELOPE.items()
    )
    models = _http_models()
    models["EventFrame"] = next(f for f in server if f.type == protocol.EventFrame.TYPE).schema
    defaults = Config()
    return Catalog(
        version=PROTOCOL_VERSION,
        client_frames=client,
        server_frames=server,
        envelope=envelope,
        close_codes=tuple(CloseDoc(int(c), c.name, c.meaning, c.reconnect.value, c.advice) for c in CloseCode),
        error_codes=tuple(ErrorDoc(e.value, e.meaning, e.retryable, e.http_status) for e in ErrorCode),
        options=_options(),
        http_calls=_http_calls(),
        models=models,
        defaults={
            "heartbeatInterval": int(defaults.heartbeat_interval * 1000),
            "heartbeatTimeout": int(defaults.heartbeat_timeout * 1000),
            "authTimeout": int(defaults.auth_timeout * 1000),
            "tokenExpiringLead": int(defaults.token_expiring_lead * 1000),
            "maxMessageSize": defaults.max_message_size,
            "historyTtl": int(defaults.history_ttl * 1000),
            "historyMaxEvents": defaults.history_max_events,
            "maxChannelsPerConnection": defaults.max_channels_per_connection,
            "sendQueueSize": defaults.send_queue_size,
            "sendQueueBytes": defaults.send_queue_bytes,
            "maxIdLength": protocol.MAX_ID_LENGTH,
            "maxChannelLength": protocol.MAX_CHANNEL_LENGTH,
            "maxEventTypeLength": protocol.MAX_EVENT_TYPE_LENGTH,
        },
    )


# --------------------------------------------------------------------------- labels


def _type_label(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "const" in schema:
        return f'"{schema["const"]}"'
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type_label(schema.get('items', {}))}"
    return str(kind)


def _constraint_text(schema: dict[str, Any]) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "pattern" in schema:
        pattern = schema["pattern"]
        whole = _full_match("")
        if pattern.startswith(whole[:4]) and pattern.endswith(whole[4:]):
            parts.append(f"the whole value matches `{pattern[4:-len(whole) + 4]}`")
        else:
            parts.append(f"matches `{pattern}`")
    if "maxLength" in schema and "minLength" in schema:
        parts.append(f"{schema['minLength']}–{schema['maxLength']} characters")
    elif "maxLength" in schema:
        parts.append(f"at most {schema['maxLength']} characters")
    elif "minLength" in schema:
        parts.append(f"at least {schema['minLength']} characters")
    if "minimum" in schema:
        parts.append(f"≥ {schema['minimum']}")
    if "maximum" in schema:
        parts.append(f"≤ {schema['maximum']}")
    if "anyOf" in schema:
        parts.append(" or ".join(_constraint_text(s) for s in schema["anyOf"]))
    return "; ".join(parts)
