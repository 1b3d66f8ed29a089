"""Pilot tests of the admin console against a fake stats source: in-place updates, sorting,
filtering, details, the disconnect action, the unreachable banner, and non-overlapping polls."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import OptionList, Static

from admin_tui.demo import HEADS, demo_source, demo_stats
from admin_tui.detail import ChannelScreen, ConnectionScreen
from admin_tui.dialogs import CLOSE_CHOICES, DEFAULT_REASON, ConfirmScreen, DisconnectScreen, HelpScreen
from admin_tui.source import DisconnectCall, FakeStatsSource, Problem, SourceError
from admin_tui.table import KeyedTable
from tests.admin_tui.helpers import ALICE, BOB, CAROL, DAVE, ERIN, SIZE, cell, conn_table, make_app, refresh, started, wait_for

pytestmark = pytest.mark.asyncio


async def test_rows_update_in_place_and_keep_the_selection() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        table = conn_table(app)
        assert table.keys_in_order() == [CAROL, ERIN, ALICE, BOB, DAVE]  # worst lag first
        assert table.select_key(BOB)
        calls = {"add": 0, "update": 0, "remove": 0}
        for name, method in (("add", "add_row"), ("update", "update_cell"), ("remove", "remove_row")):
            original = getattr(table, method)

            def counting(*args, _original=original, _name=name, **kwargs):
                calls[_name] += 1
                return _original(*args, **kwargs)

            setattr(table, method, counting)

        app.source.stats = demo_stats(0, lag={BOB: 300})
        await refresh(pilot, app)

        assert cell(table, BOB, "lag") == "300"
        assert table.keys_in_order() == [BOB, CAROL, ERIN, ALICE, DAVE]  # re-sorted …
        assert table.selected_key == BOB  # … and the cursor followed the row
        assert calls["add"] == 0 and calls["remove"] == 0
        # Only bob's changed cells: lag and queue depth values, and its other cells turning red.
        assert 2 <= calls["update"] <= len(table.columns)
        assert str(table.get_cell(BOB, "user").style) == "bold red"  # lagging row highlighted

        calls["update"] = 0
        await refresh(pilot, app)  # same data again: nothing to touch
        assert calls == {"add": 0, "update": 0, "remove": 0}


async def test_rows_appear_and_disappear_by_key() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        table = conn_table(app)
        table.select_key(ALICE)
        app.source.stats = demo_stats(1, gone=[CAROL])
        await refresh(pilot, app)
        assert CAROL not in table.keys_in_order()
        assert table.selected_key == ALICE
        app.source.stats = demo_stats(2)
        await refresh(pilot, app)
        assert table.keys_in_order()[0] == CAROL
        assert table.selected_key == ALICE


async def test_sorting_by_keys() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        table = conn_table(app)
        await pilot.press("s")  # next column: queue depth, largest first, ties by id
        assert app.conn_order.column == "queue" and app.conn_order.descending
        assert table.keys_in_order() == [CAROL, ERIN, ALICE, BOB, DAVE]
        await pilot.press("S")  # reversed
        assert table.keys_in_order() == [ALICE, BOB, DAVE, ERIN, CAROL]
        await pilot.press("s", "s", "s")  # subs, connected for, rtt
        assert app.conn_order.column == "rtt"
        assert table.keys_in_order() == [BOB, CAROL, ALICE, ERIN, DAVE]  # unknown rtt last
        status = app.query_one("#conn-status", Static).render()
        assert "sorted by RTT ↓" in str(status)


async def test_sorting_by_header_click() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        table = conn_table(app)
        await pilot.click("#conn-table", offset=(20, 0))  # the "User" heading
        assert app.conn_order.column == "user"
        assert table.keys_in_order() == [ALICE, BOB, CAROL, DAVE, ERIN]
        await pilot.click("#conn-table", offset=(20, 0))
        assert table.keys_in_order() == [ERIN, DAVE, CAROL, BOB, ALICE]


async def test_filtering_by_user_and_channel() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        table = conn_table(app)
        await pilot.press("slash")
        assert "typing a filter" in str(app.query_one("#conn-status", Static).render())
        await pilot.press(*"user:bob", "enter")
        assert table.keys_in_order() == [BOB]
        assert app.focused is table
        assert "1 of 5 shown matching user:bob" in str(app.query_one("#conn-status", Static).render())
        await pilot.press("slash", *(["backspace"] * 8), *"channel:orders", "enter")
        assert set(table.keys_in_order()) == {CAROL, DAVE, ERIN}
        # Filters survive refreshes.
        app.source.stats = demo_stats(3)
        await refresh(pilot, app)
        assert set(table.keys_in_order()) == {CAROL, DAVE, ERIN}
        await pilot.press("slash", "escape")
        assert len(table.keys_in_order()) == 5
        assert app.focused is table


async def test_disconnect_with_a_chosen_code_after_confirmation() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        table = conn_table(app)
        table.select_key(DAVE)
        await pilot.press("d")
        assert isinstance(app.screen, DisconnectScreen)
        codes = [code for code, _, _ in CLOSE_CHOICES]
        await pilot.press(*(["down"] * codes.index(4003)), "enter")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.choice.code == 4003
        await pilot.press("y")
        await wait_for(pilot, lambda: app.source.disconnects)
        assert app.source.disconnects == [DisconnectCall(DAVE, 4003, DEFAULT_REASON)]
        await wait_for(pilot, lambda: DAVE not in table.keys_in_order())  # refreshed at once


async def test_disconnect_can_be_cancelled() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        conn_table(app).select_key(BOB)
        await pilot.press("d", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.press("d", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, (DisconnectScreen, ConfirmScreen))
        assert app.source.disconnects == []


async def test_banner_when_unreachable_then_recovers() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        banner = app.query_one("#banner", Static)
        assert not banner.display
        app.source.failure = SourceError(Problem.UNREACHABLE, "cannot reach http://10.9.9.9:8081: connection refused")
        await refresh(pilot, app)
        assert banner.display
        text = str(banner.render())
        assert "cannot reach http://10.9.9.9:8081" in text and "retrying" in text.lower()
        assert len(conn_table(app).keys_in_order()) == 5  # last data still shown
        app.source.failure = SourceError(Problem.UNAUTHORIZED, "fake://server refused the API key (401)")
        await refresh(pilot, app)
        assert "WSSERVER_API_KEY" in str(banner.render())
        app.source.failure = None
        await refresh(pilot, app)
        assert not banner.display


async def test_polls_never_overlap() -> None:
    class SlowSource(FakeStatsSource):
        in_flight: int = 0
        most: int = 0

        async def fetch_stats(self):
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                await asyncio.sleep(0.05)
                return await super().fetch_stats()
            finally:
                self.in_flight -= 1

    source = SlowSource(demo_stats(0))
    app = make_app(source)
    app.interval = 0.001
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(20):
            app.action_refresh_now()
            await pilot.press("r")
        await wait_for(pilot, lambda: source.fetches >= 5)
    assert source.most == 1


async def test_connection_detail_follows_updates_and_opens_channel() -> None:
    source = demo_source()
    app = make_app(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        conn_table(app).select_key(CAROL)
        await pilot.press("enter")
        assert isinstance(app.screen, ConnectionScreen)
        subs = app.screen.query_one(KeyedTable)
        assert subs.keys_in_order() == ["chat.lobby", "orders.eu"]
        assert cell(subs, "chat.lobby", "lag") == "238"
        assert cell(subs, "chat.lobby", "sent") == "1262"
        source.stats = demo_stats(0, lag={CAROL: 5})
        await refresh(pilot, app)
        assert cell(subs, "chat.lobby", "lag") == "5"
        await pilot.press("enter")  # chat.lobby
        assert isinstance(app.screen, ChannelScreen)
        events = app.screen.query_one(KeyedTable)
        await wait_for(pilot, lambda: events.row_count == 20)
        head = HEADS["chat.lobby"]
        assert source.history_calls[-1] == ("chat.lobby", head - 20, 20)
        assert events.keys_in_order()[0] == str(head)  # newest first
        await pilot.press("escape", "escape")
        assert app.screen is app.screen_stack[0]
        # The channel info fetched by the detail screen fills the channels table's oldest seq.
        await pilot.press("3")
        assert cell(app.query_one("#chan-table", KeyedTable), "chat.lobby", "oldest") == "1"


async def test_disconnect_from_the_detail_screen() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        conn_table(app).select_key(ERIN)
        await pilot.press("enter", "d")
        assert isinstance(app.screen, DisconnectScreen)
        assert app.screen.query_one(OptionList).highlighted == 0
        await pilot.press("tab", *(["backspace"] * len(DEFAULT_REASON)), *"maintenance", "enter", "y")
        await wait_for(pilot, lambda: app.source.disconnects)
        assert app.source.disconnects == [DisconnectCall(ERIN, CLOSE_CHOICES[0][0], "maintenance")]
        await wait_for(pilot, lambda: "gone" in str(app.screen.query_one("#conn-head", Static).render()))


async def test_help_screen_and_channels_tab() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "3")
        chans = app.query_one("#chan-table", KeyedTable)
        assert chans.keys_in_order() == ["chat.lobby", "orders.eu", "user.alice"]
        assert cell(chans, "chat.lobby", "lag") == "238"
        app.source.stats = demo_stats(2)  # 2 s later, every head moved by 20
        await refresh(pilot, app)
        assert cell(chans, "orders.eu", "rate") == "10.0"
        assert cell(chans, "orders.eu", "head") == str(HEADS["orders.eu"] + 20)
        await pilot.press("slash", *"orders", "enter")
        assert chans.keys_in_order() == ["orders.eu"]
