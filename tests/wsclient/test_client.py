"""The SDK against a real server: replay and live order, every close code's reconnect advice,
token refresh (and its race with a drop), snapshot and reset surfaced to the app."""

from __future__ import annotations

import itertools

import pytest
import trio

import wsclient
from tests.support import ServerProcess, make_token
from tests.wsclient.harness import WAIT, call, running_client, static_tokens

_users = itertools.count()


def user() -> str:
    return f"u{next(_users)}"



async def test_replay_then_live_in_order_once(server):
    channel = f"room.{user()}"
    for i in range(5):
        await call(server.publish, channel, data={"i": i})
    async with running_client(server.ws_url, static_tokens(user())) as (client, rec):
        await client.subscribe(channel, last_seq=0)
        sub = await rec.wait_for(wsclient.Subscribed)
        assert (sub.mode, sub.replay_count) == ("replay", 5)
        await rec.wait_for(wsclient.Live)
        for i in range(5, 10):
            await call(server.publish, channel, data={"i": i})
        await rec.wait_for(wsclient.ChannelEvent, count=10)
        assert rec.channel_seqs(channel) == list(range(1, 11))
        assert [e.payload["i"] for e in rec.of(wsclient.ChannelEvent)] == list(range(10))
        assert client.position(channel) == wsclient.Position(10, sub.epoch)


@pytest.mark.parametrize(
    ("code", "advice"),
    [(1001, wsclient.Reconnect.AT_ONCE), (4009, wsclient.Reconnect.AT_ONCE), (4008, wsclient.Reconnect.AT_ONCE),
     (1011, wsclient.Reconnect.BACKOFF), (1013, wsclient.Reconnect.BACKOFF), (4029, wsclient.Reconnect.BACKOFF)],
)
async def test_reconnecting_close_codes_resume_without_loss(server, code, advice):
    sub, channel = user(), f"room.{user()}"
    async with running_client(server.ws_url, static_tokens(sub)) as (client, rec):
        await client.subscribe(channel, last_seq=0)
        await rec.wait_for(wsclient.Live)
        await call(server.publish, channel, data={"n": 1})
        await rec.wait_for(wsclient.ChannelEvent)
        status, body = await call(server.api, "POST", "/api/v1/disconnect", {"userId": sub, "code": code, "reason": "t"})
        assert (status, body["disconnected"]) == (200, 1)
        await call(server.publish, channel, data={"n": 2})  # published while the client is away
        rc = await rec.wait_for(wsclient.Reconnecting)
        assert (rc.code, rc.advice, rc.attempt) == (code, advice, 1)
        if advice is wsclient.Reconnect.AT_ONCE:
            assert rc.delay == 0
        else:
            assert 0 <= rc.delay <= 0.05  # full jitter below the first ceiling of the test backoff
        again = await rec.wait_for(wsclient.Subscribed, count=2)
        assert again.mode == "replay"
        await rec.wait_for(wsclient.ChannelEvent, count=2)
        assert rec.channel_seqs(channel) == [1, 2]


@pytest.mark.parametrize("code", [1000, 4003])
async def test_never_codes_close_for_good(server, code):
    sub = user()
    provider = static_tokens(sub)
    async with running_client(server.ws_url, provider) as (client, rec):
        await rec.wait_for(wsclient.Connected)
        await call(server.api, "POST", "/api/v1/disconnect", {"userId": sub, "code": code, "reason": "bye"})
        closed = await rec.wait_for(wsclient.Closed)
        assert (closed.code, closed.reason) == (code, "bye")
        assert client.state is wsclient.ConnectionState.CLOSED
        assert rec.of(wsclient.Reconnecting) == [] and client.stats.connects == 1
        with pytest.raises(wsclient.ClientClosed):
            await client.publish("room.x", "a.b", {})


@pytest.mark.parametrize("code", [4001, 4002])
async def test_token_codes_ask_for_a_new_token_first(server, code):
    sub = user()
    provider = static_tokens(sub)
    async with running_client(server.ws_url, provider) as (client, rec):
        await rec.wait_for(wsclient.Connected)
        await call(server.api, "POST", "/api/v1/disconnect", {"userId": sub, "code": code, "reason": "t"})
        rc = await rec.wait_for(wsclient.Reconnecting)
        assert rc.advice is wsclient.Reconnect.NEW_TOKEN
        await rec.wait_for(wsclient.Connected, count=2)
        assert provider.reasons == [wsclient.TokenReason.CONNECT, wsclient.TokenReason.REJECTED]


async def test_bad_token_then_good_one(server):
    sub = user()
    tokens = iter(["not-a-jwt", make_token(sub)])
    async with running_client(server.ws_url, lambda reason: next(tokens)) as (client, rec):
        rc = await rec.wait_for(wsclient.Reconnecting)
        assert (rc.code, rc.advice) == (4001, wsclient.Reconnect.NEW_TOKEN)
        connected = await rec.wait_for(wsclient.Connected)
        assert connected.user_id == sub


async def test_gives_up_when_the_provider_repeats_a_rejected_token(server):
    async with running_client(server.ws_url, lambda reason: make_token("x", secret="wrong" * 8)) as (client, rec):
        closed = await rec.wait_for(wsclient.Closed)
        assert closed.code == 4001 and "rejected" in closed.reason
        assert client.stats.connects == 1


async def test_message_too_big(tmp_path):
    with ServerProcess(tmp_path / "data", env={"WSSERVER_MAX_MESSAGE_SIZE": "1024"}) as small:
        sub = user()
        tokens = iter([make_token(sub, pad="x" * 1200), make_token(sub)])
        async with running_client(small.ws_url, lambda reason: next(tokens)) as (client, rec):
            rc = await rec.wait_for(wsclient.Reconnecting)  # the oversized auth frame
            assert (rc.code, rc.advice) == (1009, wsclient.Reconnect.BACKOFF)
            await rec.wait_for(wsclient.Connected)
            with pytest.raises(wsclient.MessageTooBig):
                await client.publish("room.big", "a.b", {"blob": "y" * 1200})
            result = await client.publish("room.big", "a.b", {"blob": "small"})
            assert result.seq == 1
            assert client.state is wsclient.ConnectionState.CONNECTED


async def test_publish_acknowledged_with_seq(server):
    channel = f"room.{user()}"
    async with running_client(server.ws_url, static_tokens(user())) as (client, rec):
        results = [await client.publish(channel, "chat.msg", {"i": i}) for i in range(3)]
        assert [r.seq for r in results] == [1, 2, 3]
        status, history = await call(server.api, "GET", f"/api/v1/channels/{channel}/history?after=0&limit=10")
        assert [e["id"] for e in history["events"]] != [r.id for r in results]  # event ids are the server's
        assert [e["payload"]["i"] for e in history["events"]] == [0, 1, 2]


async def test_publish_refused_is_not_retried(server):
    async with running_client(server.ws_url, static_tokens(user(), publish=["mine.*"])) as (client, rec):
        with pytest.raises(wsclient.PublishRefused) as info:
            await client.publish("theirs.1", "a.b", {})
        assert info.value.code == "forbidden"


async def test_reset_and_snapshot_surface_to_the_app(server):
    sub, plain, snap = user(), f"plain.{user()}", f"snap.{user()}"
    for channel in (plain, snap):
        for i in range(4):
            await call(server.publish, channel, data={"i": i})
    status, _ = await call(server.api, "PUT", f"/api/v1/channels/{snap}/snapshot", {"state": {"count": 2}, "seq": 2})
    assert status == 204
    async with running_client(server.ws_url, static_tokens(sub)) as (client, rec):
        await client.subscribe(plain, last_seq=3, epoch="an-epoch-that-was-lost")
        await client.subscribe(snap, last_seq=1, epoch="an-epoch-that-was-lost")
        await rec.wait_for(wsclient.Live)
        reset = await rec.wait_for(wsclient.Reset)
        assert (reset.channel, reset.head_seq) == (plain, 4)
        snapshot = await rec.wait_for(wsclient.Snapshot)
        assert (snapshot.channel, snapshot.seq, snapshot.state) == (snap, 2, {"count": 2})
        assert rec.channel_seqs(snap) == [3, 4]
        assert rec.channel_seqs(plain) == []
        await call(server.publish, plain, data={"i": 4})
        await rec.wait_for(wsclient.ChannelEvent, lambda e: e.channel == plain)
        assert rec.channel_seqs(plain) == [5]


async def test_position_store_resumes_where_the_app_left(server):
    channel = f"room.{user()}"
    for i in range(6):
        await call(server.publish, channel, data={"i": i})
    store = wsclient.MemoryPositionStore()
    async with running_client(server.ws_url, static_tokens(user()), positions=store) as (client, rec):
        await client.subscribe(channel, last_seq=0)
        await rec.wait_for(wsclient.ChannelEvent, count=6)
    assert store.load(channel).seq == 6
    await call(server.publish, channel, data={"i": 6})
    async with running_client(server.ws_url, static_tokens(user()), positions=store) as (client, rec):
        await client.subscribe(channel, last_seq=0)  # the store's position wins
        await rec.wait_for(wsclient.ChannelEvent)
        assert rec.channel_seqs(channel) == [7]


async def test_server_withdraws_subscription_on_refresh(tmp_path):
    env = {"WSSERVER_TOKEN_EXPIRING_LEAD": "599.5"}
    with ServerProcess(tmp_path / "data", env=env) as srv:
        sub = user()
        grants = iter([["a.*", "b.*"], ["a.*"]])

        def provider(reason):
            return make_token(sub, channels=next(grants, ["a.*"]))

        async with running_client(srv.ws_url, provider) as (client, rec):
            await client.subscribe("a.1")
            await client.subscribe("b.1")
            gone = await rec.wait_for(wsclient.Unsubscribed)
            assert gone.channel == "b.1" and gone.reason
            assert client.position("b.1") is None
            assert rec.of(wsclient.Reconnecting) == []


async def test_refresh_in_band_keeps_the_connection(tmp_path):
    env = {"WSSERVER_TOKEN_EXPIRING_LEAD": "1.8"}
    with ServerProcess(tmp_path / "data", env=env) as srv:
        sub, channel = user(), "room.r"
        calls: list[wsclient.TokenReason] = []

        def provider(reason):
            calls.append(reason)
            return make_token(sub, ttl=2 if reason is wsclient.TokenReason.CONNECT else 600)

        async with running_client(srv.ws_url, provider) as (client, rec):
            await client.subscribe(channel, last_seq=0)
            await rec.wait_for(wsclient.Live)
            with trio.fail_after(WAIT):
                while wsclient.TokenReason.EXPIRING not in calls:
                    await trio.sleep(0.05)
            await trio.sleep(2.2)  # past the first token's exp: a refresh that did not land would close 4002
            await call(srv.publish, channel, data={})
            await rec.wait_for(wsclient.ChannelEvent)
            assert rec.of(wsclient.Reconnecting) == [] and client.stats.connects == 1


async def test_expired_without_refresh_gets_a_new_token(tmp_path):
    env = {"WSSERVER_TOKEN_EXPIRING_LEAD": "0.5"}
    with ServerProcess(tmp_path / "data", env=env) as srv:
        sub = user()
        calls: list[wsclient.TokenReason] = []

        def provider(reason):
            calls.append(reason)
            if reason is wsclient.TokenReason.EXPIRING:
                return None  # the app cannot refresh now
            return make_token(sub, ttl=1.5 if reason is wsclient.TokenReason.CONNECT else 600)

        async with running_client(srv.ws_url, provider) as (client, rec):
            rc = await rec.wait_for(wsclient.Reconnecting)
            assert (rc.code, rc.advice) == (4002, wsclient.Reconnect.NEW_TOKEN)
            await rec.wait_for(wsclient.Connected, count=2)
            assert calls[-1] is wsclient.TokenReason.REJECTED


async def test_refresh_started_on_one_connection_never_reaches_the_next(tmp_path):
    """A refresh in flight when the link drops must die with that link: here its late token is
    another user's, so if the SDK sent it on the new connection the server would close 4003."""
    env = {"WSSERVER_TOKEN_EXPIRING_LEAD": "599.7", "WSSERVER_HEARTBEAT_INTERVAL": "0.3"}
    with ServerProcess(tmp_path / "data", env=env) as srv:
        sub = user()
        gate = trio.Event()
        entered = trio.Event()
        expiring_calls = 0
        cancelled = []

        async def provider(reason):
            nonlocal expiring_calls
            if reason is wsclient.TokenReason.EXPIRING:
                expiring_calls += 1
                if expiring_calls == 1:
                    entered.set()
                    try:
                        await gate.wait()
                    except trio.Cancelled:
                        cancelled.append(True)
                        raise
                    return make_token("mallory")
            return make_token(sub)

        async with running_client(srv.ws_url, provider) as (client, rec):
            with trio.fail_after(WAIT):
                await entered.wait()
            await call(srv.api, "POST", "/api/v1/disconnect", {"userId": sub, "code": 4009, "reason": "drop"})
            await rec.wait_for(wsclient.Connected, count=2)
            gate.set()
            with trio.fail_after(WAIT):
                while expiring_calls < 2:  # the new connection's own refresh
                    await trio.sleep(0.05)
            await trio.sleep(0.5)
            assert cancelled == [True]
            assert rec.of(wsclient.Closed) == [] and client.state is wsclient.ConnectionState.CONNECTED
            # The server closes 4009, but its close frame sits behind the full socket buffer, so the
            # client usually sees the TCP close (1006): both mean "reconnect at once with lastSeq".
            [rc] = rec.of(wsclient.Reconnecting)
            assert rc.code in (4009, 1006) and rc.advice is wsclient.Reconnect.AT_ONCE
            assert not rc.reason.startswith("dead link")


async def test_slow_app_gets_4009_and_loses_nothing(tmp_path):
    """An app that stops reading: the server's queue overflows (4009), the client reconnects at
    once and replays; the stall is the app's, so the SDK never calls it a dead link."""
    env = {"WSSERVER_SEND_QUEUE_SIZE": "16", "WSSERVER_HEARTBEAT_INTERVAL": "0.3", "WSSERVER_HEARTBEAT_TIMEOUT": "0.5"}
    with ServerProcess(tmp_path / "data", env=env) as srv:
        channel = "room.slow"
        async with running_client(srv.ws_url, static_tokens(user())) as (client, rec):
            await client.subscribe(channel, last_seq=0)
            await rec.wait_for(wsclient.Live)
            rec.reading = trio.Event()  # the app stops taking events
            for i in range(200):
                await call(srv.publish, channel, data={"i": i, "pad": "p" * 30_000})
            await trio.sleep(1.0)  # > heartbeatInterval + slack: the app, not the link, is slow
            rec.reading.set()
            await rec.wait_for(wsclient.ChannelEvent, count=200, timeout=30)
            assert rec.channel_seqs(channel) == list(range(1, 201))
            # The server closes 4009, but its close frame sits behind the full socket buffer, so the
            # client usually sees the TCP close (1006): both mean "reconnect at once with lastSeq".
            [rc] = rec.of(wsclient.Reconnecting)
            assert rc.code in (4009, 1006) and rc.advice is wsclient.Reconnect.AT_ONCE
            assert not rc.reason.startswith("dead link")


async def test_server_restart_replays_and_a_lost_log_resets(tmp_path):
    """SIGTERM closes with 1001 and the client is back at once after the restart; when the
    restarted server lost its log (new epoch), the app is told to reload (`Reset`)."""
    import shutil

    with ServerProcess(tmp_path / "data") as srv:
        channel = "room.restart"
        async with running_client(srv.ws_url, static_tokens(user()), backoff=wsclient.Backoff(0.05, 0.3)) as (client, rec):
            await client.subscribe(channel, last_seq=0)
            await call(srv.publish, channel, data={"n": 1})
            await rec.wait_for(wsclient.ChannelEvent)
            await call(srv.restart)
            rc = await rec.wait_for(wsclient.Reconnecting)
            assert (rc.code, rc.advice) == (1001, wsclient.Reconnect.AT_ONCE)
            await rec.wait_for(wsclient.Subscribed, count=2)
            await call(srv.publish, channel, data={"n": 2})
            await rec.wait_for(wsclient.ChannelEvent, count=2)
            assert rec.channel_seqs(channel) == [1, 2]
            epoch = rec.of(wsclient.Subscribed)[-1].epoch

            await call(srv.stop)
            shutil.rmtree(srv.data_dir)  # the log is lost
            await call(srv.start)
            reset = await rec.wait_for(wsclient.Reset)
            assert reset.channel == channel and reset.epoch != epoch
            await call(srv.publish, channel, data={"n": 3})
            event = await rec.wait_for(wsclient.ChannelEvent, count=3)
            assert (event.seq, event.epoch, event.payload) == (1, reset.epoch, {"n": 3})


async def test_wss(tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    env = {"WSSERVER_TLS_CERT": str(tmp_path / "server.pem"), "WSSERVER_TLS_KEY": str(tmp_path / "key.pem")}
    with ServerProcess(tmp_path / "data", env=env) as srv:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        url = srv.ws_url.replace("ws://", "wss://")
        async with running_client(url, static_tokens(user()), ssl_context=context) as (client, rec):
            assert (await client.publish("room.tls", "a.b", {})).seq == 1
