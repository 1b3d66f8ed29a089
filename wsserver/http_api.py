"""The internal HTTP API (CONTRACT §5) as a Starlette app served by Hypercorn's Trio worker:
routes only — publish, snapshots, channel info and history, disconnect, stats, health and
metrics — each one call into the node.

Request and response bodies are the attrs classes of ``wsserver.api_types`` through the
protocol's converter, so bad input gets a clear 400 naming the field; every `/api/` call needs the
API key (constant-time check).
"""

from __future__ import annotations

import hmac
import logging
from functools import partial
from typing import Any, Protocol

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wsserver.api_types import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    STORAGE_UNAVAILABLE,
    ApiError,
    ApiErrorBody,
    ChannelInfo,
    DisconnectRequest,
    DisconnectResponse,
    Health,
    PublishRequest,
    PublishResponse,
    SnapshotRequest,
)
from wsserver.codes import ErrorCode
from wsserver.limits import json_depth_exceeds
from wsserver.node import API_SCOPE, Node
from wsserver.protocol import check_channel_name, converter, describe_structure_error, new_id
from wsserver.stats import Stats
from wsserver.store.base import SnapshotAhead, StoreUnavailable

log = logging.getLogger("wsserver.http")

class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or code.http_status


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(converter.unstructure(body)), status_code=status, media_type="application/json")


def _error(code: ErrorCode, message: str, status: int | None = None) -> Response:
    return _json(ApiError(ApiErrorBody(code.value, message)), status or code.http_status)


class NodeView(Protocol):
    """What the API reports about the node's connections: this process's (``LocalView``), or every
    worker's of a node run with ``--workers`` (``supervisor.WorkersView``)."""

    async def statistics(self) -> Stats: ...
    async def disconnect(self, *, user_id: str | None, connection_id: str | None, code: int, reason: str) -> int: ...
    async def subscribers(self, channel: str) -> int: ...
    async def metrics(self) -> bytes: ...
    async def health(self) -> Health: ...


class LocalView:
    """The node is this process."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def statistics(self) -> Stats:
        return self.node.cluster_statistics()

    async def disconnect(self, *, user_id: str | None, connection_id: str | None, code: int, reason: str) -> int:
        return self.node.disconnect(user_id=user_id, connection_id=connection_id, code=code, reason=reason)

    async def subscribers(self, channel: str) -> int:
        return self.node.hub.subscriber_count(channel)

    async def metrics(self) -> bytes:
        return self.node.metrics.render()

    async def health(self) -> Health:
        node = self.node
        problem = node.health_problem()
        if not problem:
            return Health("ok", node.node_id)
        return Health("draining" if node.draining else "unhealthy", node.node_id, problem)


def build_app(node: Node, api_key: str, view: NodeView | None = None) -> Starlette:
    """The ASGI app of one node's internal API; ``view`` answers for the node's connections
    (default: this process's)."""
    view = view or LocalView(node)
    key = api_key.encode()
    max_body = node.config.max_message_size + 1024

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key)

    async def read_body(request: Request) -> bytes:
        """The body, read as a stream and refused as soon as it passes ``max_body`` (a declared
        Content-Length over it is refused before reading anything)."""
        too_large = _Refused(ErrorCode.PAYLOAD_TOO_LARGE, f"request body larger than {max_body} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def body_as(request: Request, cls: type) -> Any:
        raw = await read_body(request)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Refused(ErrorCode.BAD_REQUEST, f"malformed JSON: {exc}") from None
        if type(obj) is not dict:
            raise _Refused(ErrorCode.BAD_REQUEST, "the body must be a JSON object")
        try:
            return converter.structure(obj, cls)
        except Exception as exc:  # cattrs validation errors
            raise _Refused(ErrorCode.BAD_REQUEST, describe_structure_error(exc)) from None

    def channel_param(request: Request) -> str:
        channel = request.path_params["channel"]
        problem = check_channel_name(channel)
        if problem:
            raise _Refused(ErrorCode.BAD_REQUEST, problem)
        return channel

    def api(handler):
        async def endpoint(request: Request) -> Response:
            if not authorised(request):
                return _error(ErrorCode.AUTH_FAILED, "missing or wrong API key (Authorization: Bearer <api key>)", 401)
            try:
                return await handler(request)
            except _Refused as exc:
                return _error(exc.code, str(exc), exc.status)
            except StoreUnavailable as exc:
                log.warning("%s %s: storage unavailable: %s", request.method, request.url.path, exc)
                return _error(ErrorCode.UNAVAILABLE, STORAGE_UNAVAILABLE)

        return endpoint

    def check_depth(value: object, what: str) -> None:
        if json_depth_exceeds(value, node.config.max_json_depth):
            raise _Refused(ErrorCode.BAD_REQUEST, f"{what} nests deeper than {node.config.max_json_depth} levels")

    @api
    async def publish(request: Request) -> Response:
        req: PublishRequest = await body_as(request, PublishRequest)
        check_depth(req.data, "data")
        result = await node.publish(
            req.channel,
            req.event,
            orjson.dumps(req.data),
            event_id=req.id or new_id(),
            idem_scope=API_SCOPE,
            idem_key=req.id,
            source="http",
        )
        return _json(PublishResponse(result.channel, result.seq, result.epoch, result.event_id))

    @api
    async def put_snapshot(request: Request) -> Response:
        channel = channel_param(request)
        req: SnapshotRequest = await body_as(request, SnapshotRequest)
        check_depth(req.state, "state")
        if req.seq < 0:
            raise _Refused(ErrorCode.BAD_REQUEST, "seq must be >= 0")
        try:
            await node.put_snapshot(channel, req.seq, orjson.dumps(req.state))
        except SnapshotAhead as exc:
            raise _Refused(ErrorCode.BAD_REQUEST, str(exc), 409) from None
        return Response(status_code=204)

    @api
    async def channel_info(request: Request) -> Response:
        channel = channel_param(request)
        pos = await node.position(channel)
        return _json(ChannelInfo(channel, pos.epoch, pos.head_seq, pos.oldest_seq, await view.subscribers(channel)))

    @api
    async def history(request: Request) -> Response:
        channel = channel_param(request)
        try:
            after = int(request.query_params.get("after", "0"))
            limit = int(request.query_params.get("limit", str(DEFAULT_HISTORY_LIMIT)))
        except ValueError:
            raise _Refused(ErrorCode.BAD_REQUEST, "after and limit must be whole numbers") from None
        if after < 0 or not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise _Refused(ErrorCode.BAD_REQUEST, f"after must be >= 0 and limit 1-{MAX_HISTORY_LIMIT}")
        events = await node.read_after(channel, after, limit)
        body = b'{"events":[' + b",".join(ev.frame for ev in events) + b"]}"
        return Response(body, media_type="application/json")

    @api
    async def disconnect(request: Request) -> Response:
        req: DisconnectRequest = await body_as(request, DisconnectRequest)
        if req.user_id is None and req.connection_id is None:
            raise _Refused(ErrorCode.BAD_REQUEST, "give userId or connectionId")
        count = await view.disconnect(
            user_id=req.user_id, connection_id=req.connection_id, code=req.code, reason=req.reason[:120]
        )
        return _json(DisconnectResponse(count))

    @api
    async def stats(request: Request) -> Response:
        if request.query_params.get("scope") == "local":  # this process only (a supervisor asks its workers)
            return _json(node.statistics())
        return _json(await view.statistics())

    async def healthz(request: Request) -> Response:
        health = await view.health()
        return _json(health, 200 if health.status == "ok" else 503)

    async def metrics(request: Request) -> Response:
        return Response(await view.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/api/v1/publish", publish, methods=["POST"]),
        Route("/api/v1/channels/{channel}/snapshot", put_snapshot, methods=["PUT"]),
        Route("/api/v1/channels/{channel}/history", history, methods=["GET"]),
        Route("/api/v1/channels/{channel}", channel_info, methods=["GET"]),
        Route("/api/v1/disconnect", disconnect, methods=["POST"]),
        Route("/api/v1/stats", stats, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(ErrorCode.NOT_FOUND, f"no such endpoint: {request.method} {request.url.path}")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return _error(ErrorCode.BAD_REQUEST, f"method {request.method} not allowed here", 405)

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: method_not_allowed})


async def serve_api(
    node: Node, api_key: str, *, host: str, port: int, view: NodeView | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves the internal API until cancelled; supports ``nursery.start`` (→ the bound port)."""
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("wsserver.http.server")
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 30.0
    config.include_server_header = False
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn_serve, build_app(node, api_key, view), config))
        task_status.started(int(binds[0].rsplit(":", 1)[1]))
