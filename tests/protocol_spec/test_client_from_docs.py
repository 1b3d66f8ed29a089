"""The docs are enough to write a working client: a client built only from the published JSON
Schemas passes auth, subscribe, live events, reconnect with replay, and an in-band token refresh
against a real server subprocess."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from tests.protocol_spec import docs_client
from tests.protocol_spec.docs_client import DocsClient, Schemas, SchemaMismatch
from tests.support import ServerProcess, make_token

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schema"
CHANNEL = "room:docs"
TIME_LIMIT = 30.0


def test_docs_client_imports_nothing_of_the_server():
    tree = ast.parse(Path(docs_client.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not [name for name in imported if name.split(".")[0] in ("wsserver", "protocol_spec", "tests")]


def test_schemas_refuse_a_frame_that_does_not_fit():
    schemas = Schemas(SCHEMA_DIR)
    with pytest.raises(SchemaMismatch):
        schemas.build("subscribe", {"channel": "room:1", "lastSeq": "17"})
    with pytest.raises(SchemaMismatch):
        schemas.build("subscribe", {"channel": "no spaces allowed"})
    with pytest.raises(SchemaMismatch):
        schemas.check_server({"type": "subscribed", "id": "x", "timestamp": 1, "payload": {}})


@pytest.fixture
def server(tmp_path):
    # token_expiring is sent this long before `exp`: with a 60 s token it comes at once.
    with ServerProcess(tmp_path / "data", env={"WSSERVER_TOKEN_EXPIRING_LEAD": "59.5"}) as server:
        yield server


def test_auth_subscribe_live_refresh_reconnect_replay(server):
    deadline = time.monotonic() + TIME_LIMIT
    schemas = Schemas(SCHEMA_DIR)
    last_seq: int | None = None
    epoch: str | None = None

    # The first token is short-lived (60 s, warned at once); refreshes get a long one.
    with DocsClient.open(server.ws_url, schemas, deadline, lambda: make_token("dana", ttl=600)) as client:
        auth = client.send("auth", token=make_token("dana", ttl=60))
        auth_ok = client.expect("auth_ok", ref=auth["id"])
        assert auth_ok["payload"]["userId"] == "dana"
        first_expiry = auth_ok["payload"]["expiresAt"]

        sub = client.send("subscribe", channel=CHANNEL)
        subscribed = client.expect("subscribed", ref=sub["id"])
        assert subscribed["payload"]["recovery"] == "none"
        assert subscribed["payload"]["replayCount"] == 0

        # token_expiring arrives (lead 59.5 s of a 60 s token): the client refreshes in band.
        client.pump_until(lambda: bool(client.refreshed))
        assert [f["payload"]["expiresAt"] for f in client.expiring] == [first_expiry]
        refreshed = client.refreshed[0]
        assert refreshed["payload"]["expiresAt"] > first_expiry
        assert refreshed["payload"]["sessionId"] == auth_ok["payload"]["sessionId"]

        for i in range(3):
            server.publish(CHANNEL, "message.new", {"i": i})
        pub = client.send("publish", channel=CHANNEL, event="message.sent", data={"i": 3})
        seen = []
        published = None
        while len(seen) < 4 or published is None:
            frame = client.recv()
            if frame["type"] == "published":
                assert frame["ref"] == pub["id"]
                published = frame
            else:
                assert "." in frame["type"], frame
                seen.append(frame)
        assert [ev["seq"] for ev in seen] == [1, 2, 3, 4]
        assert [ev["payload"]["i"] for ev in seen] == [0, 1, 2, 3]
        assert published["payload"]["seq"] == 4
        # The frame id is only the idempotency key: the event has an id of its own.
        assert seen[3]["id"] != pub["id"]
        last_seq, epoch = seen[-1]["seq"], seen[-1]["epoch"]

    for i in range(4, 6):
        server.publish(CHANNEL, "message.new", {"i": i})

    with DocsClient.open(server.ws_url, schemas, deadline, lambda: make_token("dana", ttl=600)) as client:
        # subscribe right behind auth, without waiting: it is answered after auth_ok.
        auth = client.send("auth", token=make_token("dana", ttl=600))
        sub = client.send("subscribe", channel=CHANNEL, lastSeq=last_seq, epoch=epoch)
        client.expect("auth_ok", ref=auth["id"])
        subscribed = client.expect("subscribed", ref=sub["id"])
        assert subscribed["payload"]["recovery"] == "replay"
        assert subscribed["payload"]["replayCount"] == 2
        assert subscribed["payload"]["epoch"] == epoch
        replayed = [client.recv() for _ in range(subscribed["payload"]["replayCount"])]
        assert [(ev["seq"], ev["payload"]["i"]) for ev in replayed] == [(5, 4), (6, 5)]
        server.publish(CHANNEL, "message.new", {"i": 6})
        live = client.recv()
        assert (live["seq"], live["payload"]["i"]) == (7, 6)

        assert not client.expiring  # a 600 s token is not warned about
        # Documented refusals and answers, validated like every other frame.
        again = client.send("subscribe", channel=CHANNEL)
        refused = client.recv()
        assert (refused["type"], refused["ref"]) == ("error", again["id"])
        assert refused["payload"]["code"] == "already_subscribed" and refused["payload"]["retryable"] is False
        never = client.send("unsubscribe", channel="room:never-subscribed")
        client.expect("unsubscribed", ref=never["id"])
        ping = client.send("ping")
        client.expect("pong", ref=ping["id"])
        bye = client.send("unsubscribe", channel=CHANNEL)
        client.expect("unsubscribed", ref=bye["id"])
    # Every frame received was validated against the published schema on the way in.
    assert len(client.received) >= 7
