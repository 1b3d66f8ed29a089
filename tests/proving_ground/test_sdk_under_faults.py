"""The SDK and its conformance client through the chaos proxy: black holes are found by the
dead-link detector, a publish whose ack was lost lands exactly once, resets lose nothing."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import trio

import wsclient
from tests.proving_ground.conftest import proxied_url
from tests.support import make_token
from tests.wsclient.harness import call, running_client, static_tokens

#: The installed console script (CONTRACT §7), next to this interpreter.
CONFORMANCE = Path(sys.executable).parent / "wsclient-conformance"



async def history(server, channel: str) -> list[dict]:
    status, body = await call(server.api, "GET", f"/api/v1/channels/{channel}/history?after=0&limit=1000")
    assert status == 200
    return body["events"]


async def test_black_hole_is_found_by_the_dead_link_detector(server, proxy):
    async with running_client(proxied_url(proxy), static_tokens("alice")) as (client, rec):
        await client.subscribe("room.1", last_seq=0)
        await rec.wait_for(wsclient.Live)
        proxy.blackhole_all()
        await call(server.publish, "room.1", data={"n": 1})  # swallowed by the black hole
        rc = await rec.wait_for(wsclient.Reconnecting)
        assert rc.code == 1006 and rc.reason.startswith("dead link") and rc.delay == 0
        await rec.wait_for(wsclient.ChannelEvent)
        assert rec.channel_seqs("room.1") == [1]


async def test_publish_whose_ack_is_lost_lands_exactly_once(server, proxy):
    async with running_client(proxied_url(proxy), static_tokens("alice")) as (client, rec):
        await rec.wait_for(wsclient.Connected)
        proxy.blackhole_all("down")  # the publish reaches the server; its `published` never returns
        with trio.fail_after(10):
            result = await client.publish("room.out", "chat.msg", {"text": "once"})
        assert rec.of(wsclient.Reconnecting) and client.stats.publishes_resent == 1
        events = await history(server, "room.out")
        assert [(e["seq"], e["payload"]) for e in events] == [(result.seq, {"text": "once"})]


async def test_resets_mid_replay_lose_nothing(server, proxy):
    for i in range(300):
        await call(server.publish, "room.big", data={"i": i, "pad": "p" * 200})
    proxy.set_profile("3g")  # slow enough that the replay is still streaming when we cut it
    async with running_client(proxied_url(proxy), static_tokens("alice")) as (client, rec):
        await client.subscribe("room.big", last_seq=0)
        await rec.wait_for(wsclient.ChannelEvent, count=20, timeout=20)
        proxy.reset_all()
        await rec.wait_for(wsclient.Reconnecting)
        proxy.set_profile("clean")
        await rec.wait_for(wsclient.ChannelEvent, count=300, timeout=20)
        assert rec.channel_seqs("room.big") == list(range(1, 301))
        assert [s.mode for s in rec.of(wsclient.Subscribed)] == ["replay", "replay"]


async def test_conformance_client_through_the_proxy(server, proxy, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(make_token("carol"))
    for i in range(20):
        await call(server.publish, "conf.a", data={"i": i})
    argv = [str(CONFORMANCE), "--url", proxied_url(proxy), "--token-file", str(token_file),
            "--channel", "conf.a", "--channel", "conf.b", "--until-seq", "40",
            "--publish-channel", "conf.p", "--publish-count", "30"]
    lines: list[dict] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(functools.partial(trio.run_process, argv, stdout=subprocess.PIPE, check=False))
            buffer = b""
            cut = False
            async for chunk in proc.stdout:
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                lines.extend(json.loads(line) for line in done)
                if not cut and any("event" in line and line["event"]["seq"] == 20 for line in lines):
                    cut = True
                    token_file.write_text(make_token("carol", jti="rotated"))  # rotation by rewriting the file
                    proxy.reset_all()
                    for i in range(20, 40):
                        await call(server.publish, "conf.a", data={"i": i})
                    for i in range(40):
                        await call(server.publish, "conf.b", data={"i": i})
    assert proc.returncode == 0, lines[-3:]
    assert lines[-1] == {"done": True}
    for channel in ("conf.a", "conf.b"):
        assert [ln["event"]["seq"] for ln in lines if "event" in ln and ln["event"]["channel"] == channel] == list(range(1, 41))
    assert {"state": "reconnecting"} in lines
    assert [ln["published"]["index"] for ln in lines if "published" in ln] == list(range(30))
    stored = await history(server, "conf.p")
    assert sorted(e["payload"]["index"] for e in stored) == list(range(30))  # each publish exactly once
    assert [ln["recovery"]["mode"] for ln in lines if "recovery" in ln][:2] == ["replay", "replay"]


async def test_conformance_client_reports_fatal(server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(make_token("dave", secret="not-the-server-secret" * 2))
    result = await trio.run_process(
        [str(CONFORMANCE), "--url", server.ws_url, "--token-file", str(token_file),
         "--channel", "x.1", "--until-seq", "1"], capture_stdout=True, check=False)
    out = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert result.returncode != 0
    assert "fatal" in out[-1] and "4001" in out[-1]["fatal"]
