"""Shared pieces of the benchmark scripts: a server subprocess, a light WebSocket client
(wsproto over raw Trio sockets, so the load generator stays cheap), and percentile maths."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import trio
import wsproto
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import API_KEY, SECRET, ServerProcess, make_token

__all__ = ["API_KEY", "SECRET", "LightClient", "ServerProcess", "frame", "make_token", "percentile", "rss_kib"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def frame(type_: str, payload: dict) -> str:
    return json.dumps({"type": type_, "id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "payload": payload})


class LightClient:
    """A minimal client: wsproto state machine over a Trio TCP stream; answers pings."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.pending: list[str] = []
        self._parts: list[str] = []

    @classmethod
    async def connect(cls, host: str, port: int) -> LightClient:
        stream = await trio.open_tcp_stream(host, port)
        client = cls(stream)
        await stream.send_all(client.ws.send(Request(host=host, target="/ws")))
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during handshake")
            client.ws.receive_data(data)
            for event in client.ws.events():
                if isinstance(event, AcceptConnection):
                    return client
                raise ConnectionError(f"handshake refused: {event}")

    async def send(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def recv(self) -> str:
        while not self.pending:
            data = await self.stream.receive_some(262144)
            if not data:
                raise ConnectionError("closed")
            self.ws.receive_data(data)
            out = b""
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    self._parts.append(event.data)
                    if event.message_finished:
                        self.pending.append("".join(self._parts))
                        self._parts = []
                elif isinstance(event, Ping):
                    out += self.ws.send(event.response())
                elif isinstance(event, CloseConnection):
                    raise ConnectionError(f"closed {event.code}")
                elif isinstance(event, BytesMessage):
                    pass
            if out:
                await self.stream.send_all(out)
        return self.pending.pop(0)

    async def recv_json(self) -> dict:
        return json.loads(await self.recv())

    async def auth_and_subscribe(self, token: str, channel: str | None, last_seq: int | None = None) -> dict:
        await self.send(frame("auth", {"token": token}))
        ok = await self.recv_json()
        assert ok["type"] == "auth_ok", ok
        if channel is None:
            return ok
        payload = {"channel": channel}
        if last_seq is not None:
            payload["lastSeq"] = last_seq
        await self.send(frame("subscribe", payload))
        while True:
            sub = await self.recv_json()
            if sub["type"] == "subscribed":
                return sub

    async def aclose(self) -> None:
        await self.stream.aclose()


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "p999": percentile(values, 99.9),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def env_for_bench(**extra: str) -> dict[str, str]:
    env = {"WSSERVER_LOG_LEVEL": "warning"}
    env.update(extra)
    return env


os.environ.setdefault("PYTHONUNBUFFERED", "1")
