"""Test harness for in-process servers: build a test Config, start ``app.Server`` in a nursery,
and speak the protocol through a thin client over a real WebSocket (trio-websocket)."""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket_url

from tests.support import API_KEY, PLAIN_HTTP, SECRET, make_token
from wsserver.app import Server, ServerInfo
from wsserver.config import Config, validate
from wsserver.protocol import new_id

#: Absolute limit for any single wait on the wire in these tests.
WAIT: float = 5.0


def test_config(tmp_path, **overrides: Any) -> Config:
    base = dict(
        host="127.0.0.1",
        port=0,
        api_host="127.0.0.1",
        api_port=0,
        api_key=API_KEY,
        jwt_secret=SECRET,
        data_dir=str(tmp_path / "data"),
    )
    base.update(overrides)
    config = Config(**base)
    validate(config)
    return config


@attrs.define
class ServerHandle:
    server: Server
    info: ServerInfo
    config: Config
    nursery: trio.Nursery

    @property
    def url(self) -> str:
        return self.info.ws_url

    @property
    def node(self):
        return self.server.node

    async def api(self, method: str, path: str, body: Any = None, key: str | None = API_KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(base_url=self.info.api_url, timeout=WAIT, verify=PLAIN_HTTP) as http:
            return await http.request(method, path, json=body, headers=headers)

    async def publish(self, channel: str, data: dict | None = None, event: str = "message.new", id: str | None = None) -> dict:
        body: dict[str, Any] = {"channel": channel, "event": event, "data": data or {}}
        if id is not None:
            body["id"] = id
        r = await self.api("POST", "/api/v1/publish", body)
        assert r.status_code == 200, r.text
        return r.json()

    async def connect(self, sub: str = "alice", *, auth: bool = True, **token_kw: Any) -> Client:
        client = await Client.open(self.nursery, self.url)
        if auth:
            await client.auth(make_token(sub, **token_kw))
        return client


async def start_server(nursery: trio.Nursery, tmp_path, *, wall_clock=time.time, trim_interval: float = 5.0,
                       **overrides: Any) -> ServerHandle:
    config = test_config(tmp_path, **overrides)
    server = Server(config, wall_clock=wall_clock, trim_interval=trim_interval)
    info = await nursery.start(server.run)
    return ServerHandle(server, info, config, nursery)


class Client:
    """A protocol client for tests: explicit frames, explicit waits, nothing hidden."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, nursery: trio.Nursery, url: str, **kw: Any) -> Client:
        """Connects; the connection's reader task lives in ``nursery``."""
        return cls(await connect_websocket_url(nursery, url, **kw))

    async def aclose(self) -> None:
        with trio.move_on_after(WAIT):
            await self.ws.aclose()

    async def send(self, type_: str, payload: dict | None = None, **envelope: Any) -> str:
        frame = {"type": type_, "id": envelope.pop("id", None) or new_id(), "timestamp": int(time.time() * 1000),
                 "payload": {} if payload is None else payload, **envelope}
        await self.ws.send_message(json.dumps(frame))
        return frame["id"]

    async def recv(self, timeout: float = WAIT) -> dict:
        with trio.fail_after(timeout):
            return json.loads(await self.ws.get_message())

    async def expect(self, type_: str, *, ref: str | None = None, timeout: float = WAIT) -> dict:
        """Next frame; it must have ``type_`` (and ``ref``)."""
        frame = await self.recv(timeout)
        assert frame["type"] == type_, frame
        if ref is not None:
            assert frame.get("ref") == ref, frame
        return frame

    async def auth(self, token: str) -> dict:
        ref = await self.send("auth", {"token": token})
        return await self.expect("auth_ok", ref=ref)

    async def subscribe(self, channel: str, last_seq: int | None = None, epoch: str | None = None) -> dict:
        payload: dict[str, Any] = {"channel": channel}
        if last_seq is not None:
            payload["lastSeq"] = last_seq
        if epoch is not None:
            payload["epoch"] = epoch
        ref = await self.send("subscribe", payload)
        return await self.expect("subscribed", ref=ref)

    async def events(self, n: int, timeout: float = WAIT) -> list[dict]:
        """The next ``n`` frames, each of which must be a channel event."""
        out = []
        for _ in range(n):
            frame = await self.recv(timeout)
            assert "." in frame["type"], frame
            out.append(frame)
        return out

    async def closed(self, timeout: float = WAIT) -> int:
        """Reads until the server closes; returns the close code."""
        with trio.fail_after(timeout):
            try:
                while True:
                    await self.ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason.code


__all__ = ["Client", "ServerHandle", "start_server", "test_config", "WAIT", "make_token", "SECRET", "API_KEY"]
