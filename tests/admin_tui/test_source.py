"""`HttpStatsSource` against a real `wsserver serve` subprocess with a real WebSocket client:
stats decoding, channel info and history, disconnect with a code, and its two failure kinds."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from admin_tui.models import connection_rows, SortOrder
from admin_tui.source import HttpStatsSource, Problem, SourceError
from tests.support import API_KEY, free_port, make_token

pytestmark = pytest.mark.asyncio


async def _subscribed_client(server, user: str, channel: str):
    ws = await connect(server.ws_url)
    await ws.send(json.dumps({"type": "auth", "id": "a1", "timestamp": 0, "payload": {"token": make_token(user)}}))
    assert json.loads(await ws.recv())["type"] == "auth_ok"
    await ws.send(json.dumps({"type": "subscribe", "id": "s1", "timestamp": 0, "payload": {"channel": channel, "lastSeq": 0}}))
    assert json.loads(await ws.recv())["type"] == "subscribed"
    return ws


async def test_reads_stats_info_and_history(server_process) -> None:
    source = HttpStatsSource(server_process.api_url, API_KEY)
    async with asyncio.timeout(20):
        ws = await _subscribed_client(server_process, "alice", "chat.a")
        try:
            for i in range(3):
                await asyncio.to_thread(server_process.publish, "chat.a", data={"i": i})
            for _ in range(3):
                await ws.recv()
            stats = await source.fetch_stats()
            (conn,) = connection_rows(stats, "user:alice", SortOrder("lag", True))
            assert conn.subscriptions[0].channel == "chat.a"
            assert conn.subscriptions[0].head_seq == 3
            assert [c.head_seq for c in stats.channels if c.channel == "chat.a"] == [3]
            assert stats.nodes[0].healthy
            info = await source.channel_info("chat.a")
            assert (info.head_seq, info.oldest_seq) == (3, 1)
            events = await source.history("chat.a", after=1, limit=5)
            assert [(e.seq, e.payload) for e in events] == [(2, {"i": 1}), (3, {"i": 2})]
        finally:
            await ws.close()
            await source.aclose()


async def test_disconnect_closes_the_client_with_the_code(server_process) -> None:
    source = HttpStatsSource(server_process.api_url, API_KEY)
    async with asyncio.timeout(20):
        ws = await _subscribed_client(server_process, "bob", "chat.b")
        try:
            stats = await source.fetch_stats()
            (conn,) = [c for c in stats.connections if c.user_id == "bob"]
            assert await source.disconnect(conn.connection_id, 4003, "kicked in a test") == 1
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd.code == 4003
            assert closed.value.rcvd.reason == "kicked in a test"
            assert await source.disconnect(conn.connection_id, 4003, "again") == 0
        finally:
            await source.aclose()


async def test_wrong_key_is_unauthorized(server_process) -> None:
    source = HttpStatsSource(server_process.api_url, "not-the-key")
    try:
        async with asyncio.timeout(10):
            with pytest.raises(SourceError) as failed:
                await source.fetch_stats()
        assert failed.value.problem is Problem.UNAUTHORIZED
        assert "401" in failed.value.message
    finally:
        await source.aclose()


async def test_nothing_listening_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    source = HttpStatsSource(url, API_KEY, timeout=2)
    try:
        async with asyncio.timeout(10):
            with pytest.raises(SourceError) as failed:
                await source.fetch_stats()
        assert failed.value.problem is Problem.UNREACHABLE
        assert url in failed.value.message
    finally:
        await source.aclose()


async def test_console_recovers_when_the_server_comes_up(tmp_path) -> None:
    """The banner shows while nothing listens (a real connection refused), then goes away by
    itself once the server is up; the wrong key gets its own banner."""
    from textual.widgets import Static

    from admin_tui.app import AdminApp
    from tests.support import ServerProcess

    server = ServerProcess(tmp_path / "data")
    app = AdminApp(source=HttpStatsSource(server.api_url, API_KEY, timeout=2), interval=0.1)
    wrong = AdminApp(source=HttpStatsSource(server.api_url, "wrong-key-123"), interval=0.1)
    try:
        async with asyncio.timeout(30), app.run_test(size=(80, 24)) as pilot:
            banner = app.query_one("#banner", Static)
            while not app.failures:
                await pilot.pause(0.02)
            assert banner.display and "cannot reach" in str(banner.render())
            await asyncio.to_thread(server.start)
            while not app.generation:
                await pilot.pause(0.02)
            await pilot.pause()
            assert not banner.display
        async with asyncio.timeout(30), wrong.run_test(size=(80, 24)) as pilot:
            while not wrong.failures:
                await pilot.pause(0.02)
            assert "(401)" in str(wrong.query_one("#banner", Static).render())
    finally:
        await asyncio.to_thread(server.stop)
        server.kill()
