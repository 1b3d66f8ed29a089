"""Test helpers for driving the SDK: a recorder that collects a client's events and lets a
test wait for one, and a client factory with fast test settings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

import wsclient
from tests.support import make_token

E = TypeVar("E")

#: Absolute limit for any single wait in the SDK tests (seconds).
WAIT: float = 10.0


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs a blocking server helper (HTTP) in a thread so the clients keep running."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class Recorder:
    """Reads ``client.events`` into ``events``; ``wait_for`` blocks until a matching event exists."""

    def __init__(self, client: wsclient.Client) -> None:
        self.client = client
        self.events: list[Any] = []
        self._changed = trio.Event()
        self.reading = trio.Event()
        self.reading.set()

    async def run(self) -> None:
        """Collects events; clear ``reading`` to stop taking them (a slow app), set it to resume."""
        while True:
            await self.reading.wait()
            try:
                event = await self.client.events.receive()
            except trio.EndOfChannel:
                return
            self.events.append(event)
            self._changed.set()
            self._changed = trio.Event()

    def of(self, kind: type[E], where: Callable[[E], bool] = lambda e: True) -> list[E]:
        return [e for e in self.events if isinstance(e, kind) and where(e)]

    async def wait_for(self, kind: type[E], where: Callable[[E], bool] = lambda e: True, *, count: int = 1,
                       timeout: float = WAIT) -> E:
        with trio.fail_after(timeout):
            while len(found := self.of(kind, where)) < count:
                await self._changed.wait()
        return found[count - 1]

    def channel_seqs(self, channel: str) -> list[int]:
        return [e.seq for e in self.of(wsclient.ChannelEvent, lambda e: e.channel == channel)]


def static_tokens(sub: str, **claims: Any) -> Callable[[wsclient.TokenReason], str]:
    """A token provider that mints a fresh valid token for ``sub`` on every call, recording reasons."""
    reasons: list[wsclient.TokenReason] = []

    def provider(reason: wsclient.TokenReason) -> str:
        reasons.append(reason)
        return make_token(sub, jti=f"{sub}-{len(reasons)}", **claims)  # jti: never the same token twice

    provider.reasons = reasons  # type: ignore[attr-defined]
    return provider


@asynccontextmanager
async def running_client(url: str, provider: Any, **options: Any):
    """A started client and its recorder; closed (1000) at the end."""
    options.setdefault("heartbeat_slack", 0.5)
    options.setdefault("backoff", wsclient.Backoff(base=0.05, cap=0.2))
    options.setdefault("seed", 1)
    client = wsclient.Client(url, provider, **options)
    recorder = Recorder(client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        await nursery.start(client.run)
        try:
            yield client, recorder
        finally:
            with trio.fail_after(WAIT):
                await client.close()
