"""Snapshot tests pinning the console's main screens at 80x24 on deterministic demo data
(update with `pytest tests/admin_tui --snapshot-update`, then look at the SVGs)."""

from __future__ import annotations

from admin_tui.demo import demo_stats
from admin_tui.source import Problem, SourceError
from tests.admin_tui.helpers import CAROL, SIZE, conn_table, make_app, refresh, started, wait_for


def test_connections(snap_compare) -> None:
    app = make_app()

    async def ready(pilot) -> None:
        await started(pilot, app)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_channels(snap_compare) -> None:
    app = make_app()

    async def ready(pilot) -> None:
        await started(pilot, app)
        app.source.stats = demo_stats(1)
        await refresh(pilot, app)
        await pilot.press("3")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_overview_with_sparklines(snap_compare) -> None:
    app = make_app()

    async def ready(pilot) -> None:
        await started(pilot, app)
        for step in range(1, 15):
            app.source.stats = demo_stats(step)
            await refresh(pilot, app)
        await pilot.press("1")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_high_lag_connection_detail(snap_compare) -> None:
    app = make_app()

    async def ready(pilot) -> None:
        await started(pilot, app)
        app.source.stats = demo_stats(0, lag={CAROL: 4321})
        await refresh(pilot, app)
        conn_table(app).select_key(CAROL)
        await pilot.press("enter")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_error_banner(snap_compare) -> None:
    app = make_app()

    async def ready(pilot) -> None:
        await started(pilot, app)
        app.source.failure = SourceError(Problem.UNAUTHORIZED, "http://127.0.0.1:8081 refused the API key (401)")
        await refresh(pilot, app)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_disconnect_dialog(snap_compare) -> None:
    app = make_app()

    async def ready(pilot) -> None:
        await started(pilot, app)
        await pilot.press("d", "down", "down")
        await wait_for(pilot, lambda: app.screen.id != "_default")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)
