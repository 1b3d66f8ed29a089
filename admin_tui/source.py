"""Where the console's data comes from: the `StatsSource` protocol, `HttpStatsSource` over a
server's internal API (httpx), and `FakeStatsSource`, an in-memory stand-in for tests and demos."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
from attrs import define, field, frozen

from admin_tui.models import parse_stats
from wsserver.api_types import ChannelInfo, DisconnectRequest, DisconnectResponse
from wsserver.protocol import EventFrame, converter, describe_structure_error
from wsserver.stats import Stats


class Problem(enum.Enum):
    UNREACHABLE = "unreachable"  # connect/read failure, timeout
    UNAUTHORIZED = "unauthorized"  # 401: wrong or missing API key
    BAD_ANSWER = "bad answer"  # an unexpected status, or a body that is not what we expect


class SourceError(Exception):
    """A failed call, with what kind of failure it was (the console's banner says which)."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


class StatsSource(Protocol):
    """What the console reads and the one thing it changes. Every method raises `SourceError`."""

    @property
    def target(self) -> str:
        """Where the data comes from, for the title bar and the banner."""
        ...

    async def fetch_stats(self) -> Stats: ...

    async def channel_info(self, channel: str) -> ChannelInfo: ...

    async def history(self, channel: str, after: int, limit: int) -> list[EventFrame]: ...

    async def disconnect(self, connection_id: str, code: int, reason: str) -> int: ...

    async def aclose(self) -> None: ...


def _decode(body: Any, cls: Any) -> Any:
    try:
        return converter.structure(body, cls)
    except Exception as exc:  # cattrs ClassValidationError and friends
        raise SourceError(Problem.BAD_ANSWER, f"unexpected answer: {describe_structure_error(exc)}") from exc


class HttpStatsSource:
    """The internal HTTP API of one server (CONTRACT §5), one pooled `httpx.AsyncClient`."""

    def __init__(self, url: str, api_key: str | None, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    @property
    def target(self) -> str:
        return self.url

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise SourceError(Problem.UNREACHABLE, f"cannot reach {self.url}: {reason}") from exc
        if response.status_code == 401:
            raise SourceError(Problem.UNAUTHORIZED, f"{self.url} refused the API key (401)")
        if response.status_code != 200:
            raise SourceError(Problem.BAD_ANSWER, f"{method} {path}: HTTP {response.status_code}: {_error_text(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise SourceError(Problem.BAD_ANSWER, f"{method} {path}: the answer is not JSON") from exc

    async def fetch_stats(self) -> Stats:
        body = await self._call("GET", "/api/v1/stats")
        try:
            return parse_stats(body)
        except Exception as exc:  # cattrs validation errors
            raise SourceError(Problem.BAD_ANSWER, f"unexpected stats: {describe_structure_error(exc)}") from exc

    async def channel_info(self, channel: str) -> ChannelInfo:
        return _decode(await self._call("GET", f"/api/v1/channels/{channel}"), ChannelInfo)

    async def history(self, channel: str, after: int, limit: int) -> list[EventFrame]:
        body = await self._call("GET", f"/api/v1/channels/{channel}/history", params={"after": after, "limit": limit})
        return _decode(body.get("events") if isinstance(body, dict) else None, list[EventFrame])

    async def disconnect(self, connection_id: str, code: int, reason: str) -> int:
        request = DisconnectRequest(code=code, connection_id=connection_id, reason=reason)
        body = await self._call("POST", "/api/v1/disconnect", json=converter.unstructure(request))
        return _decode(body, DisconnectResponse).disconnected

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


@frozen
class DisconnectCall:
    connection_id: str
    code: int
    reason: str


@define
class FakeStatsSource:
    """A scripted source: tests set ``stats`` (or ``failure``) and read back what was called.

    ``fetches`` counts stats calls; ``disconnects`` records every disconnect, which also removes
    the connection from ``stats`` as a server would.
    """

    stats: Stats
    failure: SourceError | None = None
    events: dict[str, list[EventFrame]] = field(factory=dict)
    infos: dict[str, ChannelInfo] = field(factory=dict)
    fetches: int = 0
    disconnects: list[DisconnectCall] = field(factory=list)
    history_calls: list[tuple[str, int, int]] = field(factory=list)
    closed: bool = False
    name: str = "fake://server"

    @property
    def target(self) -> str:
        return self.name

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def fetch_stats(self) -> Stats:
        self.fetches += 1
        self._check()
        return self.stats

    async def channel_info(self, channel: str) -> ChannelInfo:
        self._check()
        if channel in self.infos:
            return self.infos[channel]
        head = max((c.head_seq for c in self.stats.channels if c.channel == channel), default=0)
        return ChannelInfo(channel, "fake-epoch", head, 1 if head else 0, 0)

    async def history(self, channel: str, after: int, limit: int) -> list[EventFrame]:
        self._check()
        self.history_calls.append((channel, after, limit))
        return [e for e in self.events.get(channel, []) if e.seq > after][:limit]

    async def disconnect(self, connection_id: str, code: int, reason: str) -> int:
        self._check()
        self.disconnects.append(DisconnectCall(connection_id, code, reason))
        before: Sequence[Any] = self.stats.connections
        kept = [c for c in before if c.connection_id != connection_id]
        self.stats = Stats(self.stats.generated_at, self.stats.nodes, kept, self.stats.channels)
        return len(before) - len(kept)

    async def aclose(self) -> None:
        self.closed = True
