"""OpenAPI 3.1 document of the internal HTTP API (CONTRACT §5), with request and response bodies
taken from the attrs classes the HTTP handlers themselves parse and write."""

from __future__ import annotations

from typing import Any

from protocol_spec.catalog import Catalog, HttpCall
from protocol_spec.jsonschema import GENERATED


def _operation_id(call: HttpCall) -> str:
    words = [w for w in call.path.replace("{", "").replace("}", "").split("/") if w and w not in ("api", "v1")]
    return call.method.lower() + "".join(w.title() for w in words)


def _operation(call: HttpCall) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(call),
        "summary": call.summary,
        "description": call.description,
        "tags": ["api" if call.auth else "operations"],
    }
    if call.params:
        op["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required, "description": p.doc, "schema": p.schema}
            for p in call.params
        ]
    if call.request:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{call.request}"}}},
        }
    responses: dict[str, Any] = {}
    for status, description, model, media in call.responses:
        response: dict[str, Any] = {"description": description}
        if model is not None:
            response["content"] = {media: {"schema": {"$ref": f"#/components/schemas/{model}"}}}
        elif status != 204:
            response["content"] = {media: {"schema": {"type": "string"}}}
        responses[str(status)] = response
    op["responses"] = responses
    op["security"] = [{"apiKey": []}] if call.auth else []
    return op


def render(catalog: Catalog) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for call in catalog.http_calls:
        paths.setdefault(call.path, {})[call.method.lower()] = _operation(call)
    return {
        "openapi": "3.1.0",
        "x-generated": GENERATED,
        "info": {
            "title": "wsserver internal HTTP API",
            "version": catalog.version,
            "description": "Served on the internal port (default 8081, bound to 127.0.0.1), never on the public "
            "WebSocket port. Every `/api/` call carries `Authorization: Bearer <api key>`; errors are "
            "`{error: {code, message}}` with a fitting 4xx/5xx status.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8081", "description": "default internal API address"}],
        "tags": [
            {"name": "api", "description": "application calls (API key required)"},
            {"name": "operations", "description": "health and metrics (no key)"},
        ],
        "paths": paths,
        "components": {
            "schemas": catalog.models,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "the configured `api_key`"}
            },
        },
    }
