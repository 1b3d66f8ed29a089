"""Every example in the published docs (protocol.md, the AsyncAPI messages, the JSON Schemas) is
decoded by the server's own converter, round-trips to the same JSON, and validates against the
generated schema of its frame; a wrong example fails."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from wsserver.protocol import CLIENT_FRAMES, SERVER_FRAMES, DecodeError, EventFrame, converter, decode_client_frame, encode

DOCS = Path(__file__).resolve().parents[2] / "docs"
SERVER_BY_TYPE = {cls.TYPE: cls for cls in SERVER_FRAMES if cls is not EventFrame}


def _validator(path: str) -> Draft202012Validator:
    schema = json.loads((DOCS / "schema" / path).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def check_example(frame: dict[str, Any]) -> None:
    """Raises unless ``frame`` is exactly what the server accepts (client frames) or writes
    (server frames), and fits both its own schema and the union of its direction."""
    frame_type = frame["type"]
    if frame_type in CLIENT_FRAMES:
        decoded = decode_client_frame(orjson.dumps(frame))
        assert not isinstance(decoded, DecodeError), decoded
        assert type(decoded) is CLIENT_FRAMES[frame_type]
        # Round trip: catches fields the converter ignored (e.g. a snake_case `last_seq`).
        assert {"type": frame_type, **converter.unstructure(decoded)} == frame
        _validator(f"client/{frame_type}.json").validate(frame)
        _validator("client.json").validate(frame)
    else:
        cls = SERVER_BY_TYPE.get(frame_type, EventFrame)
        decoded = converter.structure(frame, cls)
        assert orjson.loads(encode(decoded)) == frame
        slug = "event" if cls is EventFrame else frame_type
        _validator(f"server/{slug}.json").validate(frame)
        _validator("server.json").validate(frame)


def markdown_examples() -> list[dict[str, Any]]:
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, flags=re.S)]


def asyncapi_examples() -> list[dict[str, Any]]:
    doc = json.loads((DOCS / "asyncapi.json").read_text(encoding="utf-8"))
    return [ex["payload"] for message in doc["components"]["messages"].values() for ex in message["examples"]]


def schema_examples() -> list[dict[str, Any]]:
    return [
        example
        for path in sorted((DOCS / "schema").glob("*/*.json"))
        for example in json.loads(path.read_text(encoding="utf-8")).get("examples", [])
    ]


ALL = [("protocol.md", ex) for ex in markdown_examples()] + [
    ("asyncapi.json", ex) for ex in asyncapi_examples()
] + [("schema", ex) for ex in schema_examples()]


@pytest.mark.parametrize(("source", "example"), ALL, ids=[f"{s}:{e['type']}:{i}" for i, (s, e) in enumerate(ALL)])
def test_every_example_is_decoded_and_valid(source, example):
    check_example(example)


def test_every_frame_type_has_an_example_in_the_markdown():
    types = {ex["type"] for ex in markdown_examples()}
    assert set(CLIENT_FRAMES) <= types
    assert {cls.TYPE for cls in SERVER_FRAMES if cls is not EventFrame} <= types
    assert any("." in t for t in types), "no application event example"


GOOD_SUBSCRIBE = {
    "type": "subscribe",
    "id": "0b9e8f6a-1c2d-4e3f-9a8b-7c6d5e4f3a2b",
    "timestamp": 1767225600005,
    "payload": {"channel": "room:42", "lastSeq": 17, "epoch": "e1"},
}
GOOD_EVENT = {
    "type": "message.new",
    "id": "8f9a0b1c-2d3e-4f5a-9b6c-7d8e9f0a1b2c",
    "timestamp": 1767225607001,
    "channel": "room:42",
    "seq": 18,
    "epoch": "e1",
    "payload": {"text": "hello"},
}


def _with(frame: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(frame))
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = out
        for key in path:
            target = target[key]
        if value is _DROP:
            del target[last]
        else:
            target[last] = value
    return out


_DROP = object()


def test_checker_accepts_the_good_examples():
    check_example(GOOD_SUBSCRIBE)
    check_example(GOOD_EVENT)


@pytest.mark.parametrize(
    "bad",
    [
        _with(GOOD_SUBSCRIBE, payload__lastSeq="17"),  # mistyped
        _with(GOOD_SUBSCRIBE, payload__last_seq=17, payload__lastSeq=_DROP),  # snake_case: ignored by the server
        _with(GOOD_SUBSCRIBE, payload__channel="bad channel"),  # constraint
        _with(GOOD_SUBSCRIBE, timestamp=_DROP),  # required field missing
        _with(GOOD_EVENT, seq="18"),
        _with(GOOD_EVENT, type="message"),  # event types contain a dot
        _with(GOOD_EVENT, epoch=_DROP),
    ],
)
def test_a_wrong_example_fails(bad):
    with pytest.raises(Exception):  # noqa: B017 - AssertionError, ValidationError or a cattrs error
        check_example(bad)
