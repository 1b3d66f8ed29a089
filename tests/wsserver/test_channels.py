"""Channels over real sockets: sequencing, replay, the window by count and age, snapshots,
epochs, idempotent publishing, unsubscribe, slow consumers, and the replay/live boundary."""

from __future__ import annotations

import time
import uuid

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wsserver.harness import WAIT, make_token, start_server
from wsserver.config import ChannelRetention
from wsserver.node import API_SCOPE


class WallClock:
    """A wall clock the test moves forward (retention by age without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def publish_n(srv, channel: str, n: int, start: int = 0) -> list[dict]:
    return [await srv.publish(channel, {"i": start + i}) for i in range(n)]


async def test_live_events_carry_seq_epoch_id_and_data(server):
    client = await server.connect()
    sub = await client.subscribe("chat.a")
    assert sub["payload"]["recovery"] == "none" and sub["payload"]["replayCount"] == 0
    assert sub["channel"] == "chat.a" and sub["payload"]["headSeq"] == 0
    answers = await publish_n(server, "chat.a", 3)
    events = await client.events(3)
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["payload"] for e in events] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [e["id"] for e in events] == [a["id"] for a in answers]
    assert {e["epoch"] for e in events} == {sub["payload"]["epoch"]}
    assert all(e["type"] == "message.new" and e["channel"] == "chat.a" for e in events)
    assert all(abs(e["timestamp"] - time.time() * 1000) < 5000 for e in events)
    await client.aclose()


async def test_replay_after_disconnect_then_live(server):
    client = await server.connect()
    await client.subscribe("chat.r")
    await publish_n(server, "chat.r", 3)
    got = await client.events(3)
    epoch = got[-1]["epoch"]
    await client.aclose()
    await publish_n(server, "chat.r", 4, start=3)  # seq 4..7 while away
    client = await server.connect()
    sub = await client.subscribe("chat.r", last_seq=3, epoch=epoch)
    assert sub["payload"] | {} == sub["payload"]
    assert sub["payload"]["recovery"] == "replay"
    assert sub["payload"]["replayCount"] == 4 and sub["payload"]["headSeq"] == 7
    replay = await client.events(4)
    assert [e["seq"] for e in replay] == [4, 5, 6, 7]
    await server.publish("chat.r", {"live": True})
    (live,) = await client.events(1)
    assert live["seq"] == 8 and live["payload"] == {"live": True}
    # replayed events keep their original ids
    hist = (await server.api("GET", "/api/v1/channels/chat.r/history?after=3&limit=4")).json()["events"]
    assert [e["id"] for e in hist] == [e["id"] for e in replay]
    await client.aclose()


async def test_last_seq_at_head_is_replay_of_nothing_and_beyond_head_is_reset(server):
    await publish_n(server, "c.h", 2)
    client = await server.connect()
    sub = await client.subscribe("c.h", last_seq=2)
    assert (sub["payload"]["recovery"], sub["payload"]["replayCount"]) == ("replay", 0)
    sub = await client.subscribe("c.h2", last_seq=0)
    assert sub["payload"]["recovery"] == "replay" and sub["payload"]["headSeq"] == 0
    sub = await client.subscribe("c.h3", last_seq=9)
    assert sub["payload"]["recovery"] == "reset"
    await client.aclose()
    client = await server.connect()
    sub = await client.subscribe("c.h", last_seq=5)
    assert sub["payload"]["recovery"] == "reset" and sub["payload"]["replayCount"] == 0
    await server.publish("c.h", {})
    (ev,) = await client.events(1)
    assert ev["seq"] == 3
    await client.aclose()


async def test_epoch_mismatch_gives_reset_or_snapshot(server):
    await publish_n(server, "c.e", 3)
    client = await server.connect()
    sub = await client.subscribe("c.e", last_seq=1, epoch="some-old-epoch")
    assert sub["payload"]["recovery"] == "reset"
    r = await server.api("PUT", "/api/v1/channels/c.e/snapshot", {"state": {"count": 2}, "seq": 2})
    assert r.status_code == 204
    client2 = await server.connect()
    sub = await client2.subscribe("c.e", last_seq=1, epoch="some-old-epoch")
    assert sub["payload"]["recovery"] == "snapshot" and sub["payload"]["replayCount"] == 1
    snap = await client2.expect("snapshot")
    assert snap["payload"] == {"state": {"count": 2}, "seq": 2}
    assert snap["channel"] == "c.e" and snap["epoch"] == sub["payload"]["epoch"]
    (ev,) = await client2.events(1)
    assert ev["seq"] == 3
    await client.aclose()
    await client2.aclose()


async def test_window_by_count_per_channel_pattern(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, channels=(ChannelRetention("short.*", history_max_events=5),))
    await publish_n(srv, "short.a", 10)
    await publish_n(srv, "long.a", 10)
    client = await srv.connect()
    assert (await client.subscribe("short.a", last_seq=5))["payload"]["recovery"] == "replay"  # 5 >= 10-5
    assert [e["seq"] for e in await client.events(5)] == [6, 7, 8, 9, 10]
    assert (await client.subscribe("short.b", last_seq=0))["payload"]["recovery"] == "replay"
    assert (await client.subscribe("long.a", last_seq=3))["payload"]["recovery"] == "replay"
    await client.events(7)
    client2 = await srv.connect()
    assert (await client2.subscribe("short.a", last_seq=4))["payload"]["recovery"] == "reset"  # 4 < 10-5
    await srv.api("PUT", "/api/v1/channels/short.a/snapshot", {"state": {"s": 8}, "seq": 8})
    sub = await client2.subscribe("short.b", last_seq=4)
    assert sub["payload"]["recovery"] == "reset"  # beyond head of short.b, no snapshot there
    client3 = await srv.connect()
    sub = await client3.subscribe("short.a", last_seq=1)
    assert sub["payload"]["recovery"] == "snapshot" and sub["payload"]["replayCount"] == 2
    assert (await client3.expect("snapshot"))["payload"]["seq"] == 8
    assert [e["seq"] for e in await client3.events(2)] == [9, 10]


async def test_window_by_age_and_stale_snapshot(nursery, tmp_path):
    clock = WallClock()
    srv = await start_server(nursery, tmp_path, wall_clock=clock, history_ttl=3600.0)
    await publish_n(srv, "c.age", 3)
    await srv.api("PUT", "/api/v1/channels/c.age/snapshot", {"state": {}, "seq": 2})
    clock.offset = 1800
    await publish_n(srv, "c.age", 2, start=3)  # seq 4, 5 are younger
    clock.offset = 3600 + 60  # events 1-3 are now older than the ttl; 4-5 are 1860 s old
    client = await srv.connect(now=clock())
    sub = await client.subscribe("c.age", last_seq=3)
    assert sub["payload"]["recovery"] == "replay"  # event 4 is still young
    assert [e["seq"] for e in await client.events(2)] == [4, 5]
    client2 = await srv.connect(now=clock())
    sub = await client2.subscribe("c.age", last_seq=1)
    assert sub["payload"]["recovery"] == "reset"  # event 2 too old; snapshot@2 needs event 3: too old
    await srv.api("PUT", "/api/v1/channels/c.age/snapshot", {"state": {"v": 3}, "seq": 3})
    client3 = await srv.connect(now=clock())
    sub = await client3.subscribe("c.age", last_seq=1)
    assert sub["payload"]["recovery"] == "snapshot"
    assert (await client3.expect("snapshot"))["payload"] == {"state": {"v": 3}, "seq": 3}
    assert [e["seq"] for e in await client3.events(2)] == [4, 5]


async def test_snapshot_ahead_of_head_is_refused(server):
    await publish_n(server, "c.s", 1)
    r = await server.api("PUT", "/api/v1/channels/c.s/snapshot", {"state": {}, "seq": 2})
    assert r.status_code == 409 and r.json()["error"]["code"] == "bad_request"


async def test_idempotent_publish_over_http(server):
    first = await server.publish("c.i", {"a": 1}, id="pub-1")
    again = await server.publish("c.i", {"a": 999}, id="pub-1")
    assert again == first == {"channel": "c.i", "seq": 1, "epoch": first["epoch"], "id": "pub-1"}
    other = await server.publish("c.i", {"a": 2}, id="pub-2")
    assert other["seq"] == 2
    hist = (await server.api("GET", "/api/v1/channels/c.i/history")).json()["events"]
    assert [(e["seq"], e["payload"]) for e in hist] == [(1, {"a": 1}), (2, {"a": 2})]


async def test_idempotent_publish_over_websocket_scoped_per_user(server):
    alice = await server.connect("alice", publish=["c.*"])
    frame_id = str(uuid.uuid4())
    payload = {"channel": "c.w", "event": "item.added", "data": {"n": 1}}
    await alice.send("publish", payload, id=frame_id)
    first = await alice.expect("published", ref=frame_id)
    await alice.send("publish", payload, id=frame_id)  # a retry after a reconnect
    again = await alice.expect("published", ref=frame_id)
    assert first["payload"] == again["payload"] == {"channel": "c.w", "seq": 1, "epoch": first["payload"]["epoch"]}
    mallory = await server.connect("mallory", publish=["c.*"])
    await mallory.send("publish", {**payload, "data": {"n": 666}}, id=frame_id)  # same id, other user
    assert (await mallory.expect("published", ref=frame_id))["payload"]["seq"] == 2
    await server.publish("c.w", {"n": 3}, id=frame_id)  # the HTTP API is a third scope
    hist = (await server.api("GET", "/api/v1/channels/c.w/history")).json()["events"]
    assert [e["payload"] for e in hist] == [{"n": 1}, {"n": 666}, {"n": 3}]
    assert len({e["id"] for e in hist}) == 3  # event ids stay unique per event
    await alice.aclose()
    await mallory.aclose()


async def test_publish_needs_the_publish_claim_and_subscribe_the_channels_claim(server):
    client = await server.connect("u1", channels=["room.{sub}"], publish=["room.{sub}"])
    ref = await client.send("publish", {"channel": "room.u2", "event": "a.b", "data": {}})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "forbidden"
    ref = await client.send("subscribe", {"channel": "room.u2"})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "forbidden"
    await client.subscribe("room.u1")
    ref = await client.send("publish", {"channel": "room.u1", "event": "a.b", "data": {"x": 1}})
    # The event (fan-out at commit) may reach a subscribed publisher before its `published`.
    frames = {f["type"]: f for f in [await client.recv(), await client.recv()]}
    published, ev = frames["published"], frames["a.b"]
    assert published["ref"] == ref
    assert ev["seq"] == published["payload"]["seq"] == 1
    await client.aclose()


async def test_sub_with_a_star_grants_nothing_extra(server):
    client = await server.connect("*", channels=["user.{sub}"])
    ref = await client.send("subscribe", {"channel": "user.bob"})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "forbidden"
    await client.aclose()


async def test_unsubscribe_stops_events_and_duplicate_subscribe_is_refused(server):
    client = await server.connect()
    await client.subscribe("c.u")
    ref = await client.send("subscribe", {"channel": "c.u"})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "already_subscribed"
    ref = await client.send("unsubscribe", {"channel": "c.u"})
    assert (await client.expect("unsubscribed", ref=ref))["payload"]["channel"] == "c.u"
    await server.publish("c.u", {})
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)  # and no event in between
    assert server.node.hub.subscriber_count("c.u") == 0
    await client.aclose()


async def test_slow_consumer_is_closed_4009_and_recovers_losslessly(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, send_queue_size=16)
    reader = await srv.connect()
    await reader.subscribe("c.slow")
    big = {"blob": "x" * 30_000}
    (connection,) = srv.node.hub.connections.values()
    # The client does not read: socket buffers fill, then the 16-frame queue overflows.
    for i in range(2000):
        await srv.node.publish("c.slow", "message.new", b'{"i":%d,"blob":"%s"}' % (i, big["blob"].encode()),
                               event_id=str(uuid.uuid4()), idem_scope=API_SCOPE, idem_key=None, source="test")
        if connection.closing:
            break  # the server gave up on it; now the client reads and gets the 4009 close
    assert connection.close_code == 4009
    received = []
    try:
        while True:
            frame = await reader.recv()
            received.append(frame["seq"])
    except Exception:
        pass
    assert reader.ws.closed is not None and reader.ws.closed.code == 4009
    assert received == list(range(1, len(received) + 1))
    head = (await srv.api("GET", "/api/v1/channels/c.slow")).json()["headSeq"]
    again = await srv.connect()
    sub = await again.subscribe("c.slow", last_seq=received[-1] if received else 0)
    assert sub["payload"]["recovery"] == "replay"
    rest = await again.events(head - (received[-1] if received else 0), timeout=30)
    assert [e["seq"] for e in rest] == list(range(len(received) + 1, head + 1))
    await again.aclose()


async def test_large_replay_streams_through_the_bounded_queue(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, send_queue_size=64)
    n = 3000
    for i in range(n):
        await srv.node.publish("c.big", "message.new", b'{"i":%d}' % i, event_id=str(uuid.uuid4()),
                               idem_scope=API_SCOPE, idem_key=None, source="test")
    client = await srv.connect()
    sub = await client.subscribe("c.big", last_seq=0)
    assert sub["payload"]["replayCount"] == n
    events = await client.events(n, timeout=30)
    assert [e["seq"] for e in events] == list(range(1, n + 1))
    connection = next(iter(srv.node.hub.connections.values()))
    assert connection.outbox.peak <= 64
    await client.aclose()


async def test_clean_restart_keeps_events_epoch_and_sequence(nursery, tmp_path):
    async with trio.open_nursery() as first:
        srv = await start_server(first, tmp_path)
        before = await publish_n(srv, "c.d", 3)
        srv.server.request_shutdown()
    srv2 = await start_server(nursery, tmp_path)
    after = await srv2.publish("c.d", {"i": 3})
    assert after["seq"] == 4 and after["epoch"] == before[0]["epoch"]
    client = await srv2.connect()
    sub = await client.subscribe("c.d", last_seq=1, epoch=before[0]["epoch"])
    assert sub["payload"]["recovery"] == "replay"
    assert [e["seq"] for e in await client.events(3)] == [2, 3, 4]
    await client.aclose()


async def test_a_new_data_dir_means_a_new_epoch(nursery, tmp_path):
    a = await start_server(nursery, tmp_path / "a")
    b = await start_server(nursery, tmp_path / "b")
    assert (await a.publish("c.x"))["epoch"] != (await b.publish("c.x"))["epoch"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.integers(0, 25),
    resume_at=st.floats(0, 1),
    during=st.lists(st.integers(0, 12), min_size=1, max_size=3),
    yields=st.integers(0, 5),
)
async def test_replay_live_boundary_under_concurrent_publishing(tmp_path, before, resume_at, during, yields):
    """Property: whatever the interleaving of publishers with a subscribe(lastSeq=N), the client
    receives exactly N+1 … head, in order, once. (Each example runs its own trio.run, so it
    starts its own server.)"""
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, tmp_path / uuid.uuid4().hex)
        await _boundary_example(server, before, resume_at, during, yields)
        server.server.request_shutdown()


async def _boundary_example(server, before, resume_at, during, yields):
    channel = f"prop.{uuid.uuid4().hex[:12]}"

    async def pub(k: int) -> None:
        for i in range(k):
            await server.node.publish(channel, "p.e", b"{}", event_id=str(uuid.uuid4()), idem_scope=API_SCOPE,
                                      idem_key=None, source="test")
            for _ in range(i % (yields + 1)):
                await trio.lowlevel.checkpoint()

    await pub(before)
    last_seq = int(resume_at * before)
    client = await server.connect()
    async with trio.open_nursery() as n:
        for k in during:
            n.start_soon(pub, k)
        sub = await client.subscribe(channel, last_seq=last_seq)
    head = before + sum(during)
    assert sub["payload"]["recovery"] == "replay"
    got = [e["seq"] for e in await client.events(head - last_seq)]
    assert got == list(range(last_seq + 1, head + 1))
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)  # nothing extra (no duplicate) before the pong
    await client.aclose()


async def test_subscribers_on_many_channels_only_get_their_own(server):
    clients = []
    for i in range(5):
        c = await server.connect(f"u{i}")
        await c.subscribe(f"room.{i}")
        clients.append(c)
    for i in range(5):
        await server.publish(f"room.{i}", {"room": i})
    for i, c in enumerate(clients):
        (ev,) = await c.events(1)
        assert ev["payload"] == {"room": i} and ev["seq"] == 1
        ref = await c.send("ping")
        await c.expect("pong", ref=ref)
        await c.aclose()


async def test_token_still_needed_for_publish_frames(server):
    client = await server.connect(auth=False)
    ref = await client.send("publish", {"channel": "a.b", "event": "x.y", "data": {}})
    assert (await client.expect("error", ref=ref))["payload"]["code"] == "unauthenticated"
    await client.auth(make_token())
    with trio.fail_after(WAIT):
        await client.aclose()


async def test_pipelined_publishes_are_answered_in_frame_order_with_increasing_seqs(server):
    """A client may send many publishes without waiting: they share group commits, yet every
    `published` comes back in frame order with seqs in frame order, and a later frame (a ping)
    is answered only after all of them."""
    client = await server.connect("pipe", publish=["c.*"])
    ids = [await client.send("publish", {"channel": "c.pipe", "event": "n.x", "data": {"i": i}}) for i in range(150)]
    ping = await client.send("ping")
    answers = [await client.recv() for _ in range(151)]
    assert [a["type"] for a in answers] == ["published"] * 150 + ["pong"]
    assert [a["ref"] for a in answers[:150]] == ids and answers[-1]["ref"] == ping
    assert [a["payload"]["seq"] for a in answers[:150]] == list(range(1, 151))
    hist = (await server.api("GET", "/api/v1/channels/c.pipe/history?limit=1000")).json()["events"]
    assert [e["payload"]["i"] for e in hist] == list(range(150))
    assert server.node.store.statistics().batches < 150  # they shared commits
    # an error for one frame in the middle of a pipeline keeps its place too
    first = await client.send("publish", {"channel": "c.pipe", "event": "n.x", "data": {}})
    bad = await client.send("publish", {"channel": "other", "event": "n.x", "data": {}})
    last = await client.send("publish", {"channel": "c.pipe", "event": "n.x", "data": {}})
    got = [await client.recv() for _ in range(3)]
    assert [(f["type"], f["ref"]) for f in got] == [("published", first), ("error", bad), ("published", last)]
    await client.aclose()


async def test_a_retried_id_inside_one_group_commit_is_still_one_event(server):
    client = await server.connect("dup", publish=["c.*"])
    frame_id = str(uuid.uuid4())
    for _ in range(3):  # back to back: they land in one batch of the store's writer
        await client.send("publish", {"channel": "c.dup", "event": "n.x", "data": {"v": 1}}, id=frame_id)
    answers = [await client.recv() for _ in range(3)]
    assert {(a["type"], a["ref"], a["payload"]["seq"]) for a in answers} == {("published", frame_id, 1)}
    hist = (await server.api("GET", "/api/v1/channels/c.dup/history")).json()["events"]
    assert len(hist) == 1
    await client.aclose()


async def test_publishes_arriving_while_the_last_answer_is_sent_keep_one_answerer(nursery, tmp_path):
    """Publishes that trickle in (the queue empties and refills while answers are being sent)
    are answered once each, in frame order, without ending the connection."""
    server = await start_server(nursery, tmp_path, rate_limit_frames=100_000.0)
    client = await server.connect("trickle", publish=["c.*"])
    ids = []
    for i in range(300):
        ids.append(await client.send("publish", {"channel": "c.trickle", "event": "n.x", "data": {"i": i}}))
        if i % 3 == 0:
            await trio.sleep(0.001)  # let the store commit and the answers go out mid-stream
    answers = [await client.recv() for _ in range(300)]
    assert [a["type"] for a in answers] == ["published"] * 300
    assert [a["ref"] for a in answers] == ids
    assert [a["payload"]["seq"] for a in answers] == list(range(1, 301))
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)
    await client.aclose()


async def test_nothing_of_a_channel_follows_its_unsubscribed_during_a_catch_up(nursery, tmp_path):
    """A token refresh revokes a channel while a repair is streaming it from the store (the
    client is slow, so the repair waits for room): after `unsubscribed`, not one more event of
    that channel may arrive. (The repair used to check ownership once per page.)"""
    srv = await start_server(nursery, tmp_path, send_queue_size=16)
    client = await srv.connect("u", channels=["rv.*"])
    await client.subscribe("rv.c", last_seq=0)
    store = srv.server.store
    deliver, store.on_commit = store.on_commit, lambda ev: None  # the backplane loses 100 events...
    blob = "z" * 60_000
    for i in range(100):
        await srv.publish("rv.c", {"i": i, "blob": blob})
    store.on_commit = deliver
    assert srv.node.hub.catch_up("rv.c", "reconnect") == 1  # ...and repairs from the store, as after a pub/sub reconnect
    await trio.sleep(0.5)  # the repair fills the sockets and waits for the slow client
    ref = await client.send("auth", {"token": make_token("u", channels=["other.*"])})
    frames, unsubscribed_at = [], None
    with trio.fail_after(30):
        while True:
            frame = await client.recv(timeout=30)
            frames.append(frame)
            if frame["type"] == "unsubscribed":
                unsubscribed_at = len(frames) - 1
                ping = await client.send("ping")
            if frame["type"] == "pong" and unsubscribed_at is not None and frame["ref"] == ping:
                break
    assert any(f["type"] == "auth_ok" and f["ref"] == ref for f in frames)
    after = [f for f in frames[unsubscribed_at + 1:] if f.get("channel") == "rv.c"]
    assert after == [], f"{len(after)} events of a revoked channel followed its `unsubscribed`"
    seqs = [f["seq"] for f in frames[:unsubscribed_at] if f.get("channel") == "rv.c" and "seq" in f]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < 100
    await client.aclose()


async def test_a_wall_clock_step_back_leaves_no_hole_in_the_log(nursery, tmp_path):
    """The reported reproduction: events 6-10 published while the clock stood 2 h back were
    trimmed by age while 1-5 stayed, and a client with lastSeq 0 got `replay` 11 and then
    seqs 1-5, 11. Publish times now never go backwards in a channel and trimming is front-only."""
    clock = WallClock()
    srv = await start_server(nursery, tmp_path, wall_clock=clock, history_ttl=3600.0)
    await publish_n(srv, "step.c", 5)
    clock.offset = -7200  # NTP steps the clock 2 h back
    await publish_n(srv, "step.c", 5, start=5)
    clock.offset = 1800  # and later it is right again (30 min on)
    await publish_n(srv, "step.c", 1, start=10)
    await srv.server.store.trim()
    client = await srv.connect(now=clock())
    sub = await client.subscribe("step.c", last_seq=0)
    assert sub["payload"]["recovery"] == "replay" and sub["payload"]["replayCount"] == 11
    assert [e["seq"] for e in await client.events(11)] == list(range(1, 12))
    await client.aclose()


async def test_catch_up_never_delivers_a_hole_it_finds_in_the_store(nursery, tmp_path):
    """Defence in depth: a log with a hole (a database from before the fix, or damaged) makes the
    catch-up stop at the hole and re-plan (here: `reset`), instead of delivering seq 11 after 5."""
    srv = await start_server(nursery, tmp_path)
    await publish_n(srv, "hole.c", 11)
    store = srv.server.store
    await trio.to_thread.run_sync(
        lambda: store._wcon.execute("DELETE FROM events WHERE channel = 'hole.c' AND seq BETWEEN 6 AND 10"),
        limiter=store._write_limiter,
    )
    client = await srv.connect()
    sub = await client.subscribe("hole.c", last_seq=0)
    assert sub["payload"]["recovery"] == "replay"  # event 1 is there: the plan cannot see the hole
    assert [e["seq"] for e in await client.events(5)] == [1, 2, 3, 4, 5]
    replanned = await client.expect("subscribed")
    assert replanned["payload"]["recovery"] == "reset" and replanned["payload"]["headSeq"] == 11
    await srv.publish("hole.c", {"live": 1})
    assert [e["seq"] for e in await client.events(1)] == [12]
    await client.aclose()
