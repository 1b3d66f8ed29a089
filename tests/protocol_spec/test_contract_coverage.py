"""CONTRACT.md's frames, fields, close codes, error codes, HTTP calls and configuration keys all
appear in the generated docs (parsed from the contract's own tables, so a new row is checked too)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO.parent / "shared" / "CONTRACT.md"
DOCS = REPO / "docs"
# CI lays a copy of shared/ beside the clone, as the workplace does beside /work/main: no skip.


def tables() -> dict[tuple[str, ...], list[list[str]]]:
    """Every Markdown table of the contract: header cells → body rows (cells stripped)."""
    found: dict[tuple[str, ...], list[list[str]]] = {}
    block: list[str] = []
    for line in [*CONTRACT.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            rows = [[c.strip() for c in row.strip().strip("|").split("|")] for row in block]
            header = tuple(rows[0])
            # Two tables may share a header (the client and server frame tables differ in it).
            found[header if header not in found else (*header, "#2")] = rows[2:]
        block = []
    return found


def table(*header: str) -> list[list[str]]:
    return tables()[header]


def names_in_braces(cell: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", cell)
    if not match:
        return []
    # `{userId? , connectionId?}`, `{events: [...]}`: the names only.
    return [n.split(":")[0].strip().rstrip("?").strip() for n in match.group(1).split(",") if n.strip()]


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@pytest.fixture(scope="module")
def protocol_md() -> str:
    return (DOCS / "protocol.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def client_schema() -> dict:
    return json.loads((DOCS / "schema" / "client.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def server_schema() -> dict:
    return json.loads((DOCS / "schema" / "server.json").read_text(encoding="utf-8"))


def _frame_schema(union: dict, frame_type: str) -> dict:
    for schema in union["$defs"].values():
        if schema["properties"]["type"].get("const") == frame_type:
            return schema
    raise AssertionError(f"no schema for frame type {frame_type!r}")


def test_contract_tables_were_found():
    assert len(table("type", "payload", "answer")) == 5
    assert len(table("type", "payload", "when")) >= 9


def test_envelope_fields(protocol_md, server_schema):
    rows = table("field", "type", "rule")
    fields = [ticked(row[0])[0] for row in rows]
    assert fields == ["type", "id", "timestamp", "payload", "channel", "seq", "epoch", "ref"]
    envelope = protocol_md.split("## Envelope", 1)[1].split("\n## ", 1)[0]
    event = server_schema["$defs"]["event"]["properties"]
    for field, row in zip(fields, rows):
        assert f"| `{field}` | {row[1]} |" in envelope, field
        if field != "ref":
            assert field in event


def test_client_frames_and_payload_fields(protocol_md, client_schema):
    for row in table("type", "payload", "answer"):
        frame_type = ticked(row[0])[0]
        schema = _frame_schema(client_schema, frame_type)
        payload = schema["properties"]["payload"].get("properties", {})
        for name in names_in_braces(row[1]):
            assert name in payload, (frame_type, name)
            assert f"| `{name}` |" in protocol_md.split(f"### `{frame_type}` (client → server)", 1)[1].split("\n### ", 1)[0]
        optional = [n.strip()[:-1] for n in re.search(r"\{([^}]*)\}", row[1]).group(1).split(",") if n.strip().endswith("?")]
        for name in optional:
            assert name not in schema["properties"]["payload"].get("required", []), (frame_type, name)
        for answer in ticked(row[2]):
            if answer.isidentifier():
                assert f"`{answer}`" in protocol_md


def test_server_frames_and_payload_fields(protocol_md, server_schema):
    for row in table("type", "payload", "when"):
        names = ticked(row[0])
        if row[0].startswith("application event"):
            schema = server_schema["$defs"]["event"]
            assert "### application event" in protocol_md
            for field in ("channel", "seq", "epoch", "id", "timestamp"):
                assert field in schema["required"]
            continue
        frame_type = names[0]
        schema = _frame_schema(server_schema, frame_type)
        section = protocol_md.split(f"### `{frame_type}` (server → client)", 1)[1].split("\n### ", 1)[0]
        payload = schema["properties"]["payload"].get("properties", {})
        for name in names_in_braces(row[1]):
            assert name in payload, (frame_type, name)
            assert f"| `{name}` |" in section, (frame_type, name)
        # "with envelope `channel`, `epoch`" (snapshot)
        if "with envelope" in row[1]:
            for name in ticked(row[1].split("with envelope", 1)[1]):
                assert name in schema["required"], (frame_type, name)
        if frame_type == "subscribed":
            for mode in ("replay", "snapshot", "reset", "none"):
                assert mode in payload["recovery"]["enum"]


def test_close_codes(protocol_md):
    rows = table("code", "meaning", "client should")
    assert len(rows) >= 11
    close_section = protocol_md.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    for row in rows:
        assert re.search(rf"^\| {row[0]} \| `[A-Z_]+` \|", close_section, flags=re.M), row[0]


def test_error_codes_named_in_the_contract(protocol_md):
    text = CONTRACT.read_text(encoding="utf-8")
    codes = set(re.findall(r"`error`\s+\(?`([a-z_]+)`", text))
    assert {"bad_request", "unauthenticated", "auth_failed", "forbidden", "token_expired"} <= codes
    errors = protocol_md.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    for code in codes:
        assert f"| `{code}` |" in errors, code


def test_http_calls(protocol_md):
    openapi = json.loads((DOCS / "openapi.json").read_text(encoding="utf-8"))
    schemas = openapi["components"]["schemas"]

    def props(ref: dict) -> dict:
        return schemas[ref["$ref"].rsplit("/", 1)[1]]["properties"]

    rows = table("call", "body → answer")
    assert len(rows) == 8
    http_section = protocol_md.split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    for row in rows:
        method, target = ticked(row[0])[0].split(" ", 1)
        path, _, query = target.partition("?")
        operation = openapi["paths"][path][method.lower()]
        assert f"`{method} {path}" in http_section
        params = {p["name"] for p in operation.get("parameters", [])}
        for pair in filter(None, query.split("&")):
            assert pair.split("=")[0] in params, (path, pair)
        body, _, answer = row[1].partition("→")
        for name in names_in_braces(body):
            request = operation["requestBody"]["content"]["application/json"]["schema"]
            assert name in props(request), (path, name)
        ok = next(code for code in operation["responses"] if code.startswith("2"))
        if "204" in answer:
            assert ok == "204"
        for name in names_in_braces(answer):
            response = operation["responses"][ok]["content"]["application/json"]["schema"]
            assert name in props(response), (path, name)
        if path.startswith("/api/"):
            assert operation["security"] == [{"apiKey": []}]
            assert "401" in operation["responses"]


def test_configuration_keys(protocol_md):
    rows = table("key", "flag", "env", "default")
    config_section = protocol_md.split("## Configuration", 1)[1]
    assert len(rows) >= 18
    for row in rows:
        keys = [k.strip() for k in row[0].split(",")]
        for key, flag, env in zip(keys, ticked(row[1]), ticked(row[2])):
            assert f"| `{key}` | `{flag}` | `{env}` |" in config_section, key
