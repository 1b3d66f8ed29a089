"""The store contract suite (``contract.py``) on the embedded SQLite log and the in-memory store,
in the default tier (the Redis log runs it under the redis marker: tests/redis/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.store.contract import CONTRACT, DEFAULT_RETENTION
from wsserver.config import Retention
from wsserver.store.memory import MemoryStore
from wsserver.store.sqlite import SqliteStore

#: What a store that keeps nothing across a restart cannot pass.
DURABLE_ONLY = {"survives_reopen"}


class SqliteHarness:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "events.sqlite3"

    @asynccontextmanager
    async def open(self, retention: Callable[[str], Retention] = lambda c: DEFAULT_RETENTION) -> AsyncIterator[SqliteStore]:
        store = SqliteStore(self.path, retention=retention, on_commit=lambda ev: None)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            yield store
            nursery.cancel_scope.cancel()

    def lose_data(self) -> None:
        for path in self.path.parent.glob("events.sqlite3*"):
            path.unlink()


class MemoryHarness:
    @asynccontextmanager
    async def open(self, retention: Callable[[str], Retention] = lambda c: DEFAULT_RETENTION) -> AsyncIterator[MemoryStore]:
        store = MemoryStore(retention=retention)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            yield store
            nursery.cancel_scope.cancel()

    def lose_data(self) -> None:
        pass  # every open is a new, empty store


@pytest.mark.parametrize("case", CONTRACT, ids=lambda f: f.__name__)
async def test_sqlite(tmp_path, case):
    with trio.fail_after(60):
        await case(SqliteHarness(tmp_path))


@pytest.mark.parametrize("case", [c for c in CONTRACT if c.__name__ not in DURABLE_ONLY], ids=lambda f: f.__name__)
async def test_memory(case):
    with trio.fail_after(60):
        await case(MemoryHarness())
