"""`/healthz` tells the truth (CONTRACT §5): 503 with the reason while the store refuses writes,
200 again by itself once it takes them; no acknowledged event is lost meanwhile; and clients and
API callers are told what happened in plain words, never internal details."""

from __future__ import annotations

import trio

from tests.wsserver.harness import WAIT, start_server


async def _set_max_pages(srv, pages: int | None) -> int:
    """Makes the embedded log's database 'full' (SQLite's own limit on its size), or lifts it."""
    store = srv.server.store

    def run() -> int:
        con = store._wcon
        current = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count = {pages if pages is not None else 1 << 30}")
        return current

    return await trio.to_thread.run_sync(run, limiter=store._write_limiter)


async def test_a_full_disk_turns_health_red_with_the_reason_and_back_by_itself(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path)
    assert (await srv.api("GET", "/healthz")).status_code == 200
    acknowledged = [await srv.publish("disk.c", {"i": i}) for i in range(5)]
    client = await srv.connect()
    await client.subscribe("disk.c", last_seq=5)

    pages = await _set_max_pages(srv, 0)
    await _set_max_pages(srv, pages)  # no page more than it has: the next write needs one
    big = {"blob": "x" * 20_000}
    refused = await srv.api("POST", "/api/v1/publish", {"channel": "disk.c", "event": "a.b", "data": big})
    assert refused.status_code == 503
    message = refused.json()["error"]["message"]
    assert "unavailable" in message and "sqlite" not in message.lower() and str(tmp_path) not in message
    ref = await client.send("publish", {"channel": "disk.c", "event": "a.b", "data": big})
    error = await client.expect("error", ref=ref)
    assert error["payload"]["code"] == "unavailable" and error["payload"]["retryable"] is True
    assert str(tmp_path) not in error["payload"]["message"]

    health = await srv.api("GET", "/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy" and "full" in health.json()["reason"]

    await _set_max_pages(srv, None)  # room again; no publish needed for health to recover
    with trio.fail_after(WAIT):
        while (await srv.api("GET", "/healthz")).status_code != 200:
            await trio.sleep(0.1)
    after = await srv.publish("disk.c", {"i": 5})
    assert after["seq"] == 6  # nothing refused took a seq
    history = (await srv.api("GET", "/api/v1/channels/disk.c/history?after=0&limit=10")).json()["events"]
    assert [e["id"] for e in history[:5]] == [a["id"] for a in acknowledged]
    assert [e["seq"] for e in history] == [1, 2, 3, 4, 5, 6]
    (live,) = await client.events(1)
    assert live["seq"] == 6
    await client.aclose()


async def test_health_says_draining(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path)
    srv.node.draining = True
    health = await srv.api("GET", "/healthz")
    assert health.status_code == 503 and health.json()["status"] == "draining" and health.json()["reason"]
    srv.node.draining = False
