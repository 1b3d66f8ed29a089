"""Helpers for the console's pilot tests: start the app on demo data, drive refreshes one at a
time, and wait for conditions with an absolute time limit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot

from admin_tui.app import AdminApp
from admin_tui.demo import demo_source
from admin_tui.source import FakeStatsSource
from admin_tui.table import KeyedTable

#: Connection ids of the demo data, by user.
ALICE, BOB, CAROL, DAVE, ERIN = (f"c0a1f3e5b7d9000{i}" for i in range(1, 6))
SIZE = (80, 24)


def make_app(source: FakeStatsSource | None = None) -> AdminApp:
    # A long interval: tests decide when a refresh happens (`refresh`), so nothing races them.
    return AdminApp(source=source or demo_source(), interval=3600)


async def wait_for(pilot: Pilot, condition: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await pilot.pause(0.01)


async def refresh(pilot: Pilot, app: AdminApp) -> None:
    """One more poll round, applied or failed, before returning."""
    seen = (app.generation, app.failures, app.source.fetches)
    app.action_refresh_now()
    await wait_for(pilot, lambda: app.source.fetches > seen[2] and (app.generation, app.failures) != seen[:2])
    await pilot.pause()


async def started(pilot: Pilot, app: AdminApp) -> None:
    await wait_for(pilot, lambda: app.generation >= 1)
    await pilot.pause()


def conn_table(app: AdminApp) -> KeyedTable:
    return app.query_one("#conn-table", KeyedTable)


def cell(table: KeyedTable, row: str, column: str) -> str:
    return table.get_cell(row, column).plain
