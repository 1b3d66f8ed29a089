"""A connection on its own layer: the in-memory transport (no sockets) and Trio's MockClock
(``autojump_clock``: a 25 s heartbeat or a 10 s auth timeout take no real time), over a node with
the in-memory store. The write path (direct, partial, queued), the deadlines and the catch-up
are exercised exactly as in production; only the socket and the clock are stand-ins."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.support import SECRET, make_token
from wsserver.auth import TokenVerifier
from wsserver.backplane.base import LocalBackplane
from wsserver.config import Config
from wsserver.connection import Connection
from wsserver.hub import Hub
from wsserver.metrics import Metrics
from wsserver.node import API_SCOPE, Node
from wsserver.store.memory import MemoryStore
from wsserver.transport.memory import MemoryTransport

T0 = 1_800_000_000.0


class Layer:
    def __init__(self, nursery: trio.Nursery, **overrides: Any) -> None:
        self.nursery = nursery
        self.t0 = trio.current_time()  # MockClock's virtual time does not start at 0
        self.wall = lambda: T0 + self.elapsed()
        self.config = Config(api_key="k" * 8, jwt_secret=SECRET, **overrides)
        hub = Hub()
        self.store = MemoryStore(retention=self.config.retention_for, on_commit=hub.dispatch_many, wall_clock=self.wall)
        self.node = Node(config=self.config, store=self.store, backplane=LocalBackplane(), hub=hub, metrics=Metrics(),
                         verifier=TokenVerifier(self.config, self.wall), wall_clock=self.wall)

    def elapsed(self) -> float:
        """Virtual seconds since the layer was made."""
        return trio.current_time() - self.t0

    async def start(self) -> Layer:
        await self.nursery.start(self.store.run)
        await self.nursery.start(self.node.timers.run)
        return self

    def connect(self, **transport: Any) -> tuple[MemoryTransport, Connection]:
        t = MemoryTransport(**transport)
        conn = Connection(self.node, t)
        self.nursery.start_soon(conn.run)
        return t, conn

    def token(self, sub: str = "u", ttl: float = 600, **kw: Any) -> str:
        return make_token(sub, ttl=ttl, now=self.wall(), **kw)

    async def publish(self, channel: str, data: bytes = b"{}", n: int = 1) -> None:
        for _ in range(n):
            await self.node.publish(channel, "a.b", data, event_id=f"e{trio.current_time()}", idem_scope=API_SCOPE,
                                    idem_key=None, source="http")


async def auth(t: MemoryTransport, token: str) -> dict:
    t.client_send({"type": "auth", "id": "a1", "timestamp": 0, "payload": {"token": token}})
    return await t.client_receive()


async def closed(conn: Connection) -> None:
    while conn.node.hub.connections.get(conn.id) is conn:
        await trio.sleep(0.01)


@pytest.fixture
async def layer(nursery) -> Layer:
    return await Layer(nursery).start()


async def test_auth_timeout_closes_4008_after_exactly_the_timeout(layer, autojump_clock):
    t, conn = layer.connect()
    await trio.sleep(layer.config.auth_timeout - 0.1)
    assert not conn.closing
    await closed(conn)
    assert layer.elapsed() == pytest.approx(layer.config.auth_timeout, abs=0.05)
    assert conn.close_code == 4008 and t.closed_by_server[0] == 4008


async def test_heartbeat_keeps_an_answering_peer_and_cuts_a_silent_one(layer, autojump_clock):
    t, conn = layer.connect()
    assert (await auth(t, layer.token(ttl=100_000)))["type"] == "auth_ok"
    reading = trio.CancelScope()

    async def read() -> None:
        with reading:
            while True:
                await t.client_receive()  # answers every ping

    layer.nursery.start_soon(read)
    await trio.sleep(1000)  # 40 heartbeats of virtual time
    assert not conn.closing and conn.rtt is not None
    reading.cancel()  # the peer goes silent (a phone in a tunnel)
    silent_at = trio.current_time()
    await closed(conn)
    cfg = layer.config
    assert trio.current_time() - silent_at <= cfg.heartbeat_interval + cfg.heartbeat_timeout + 0.1
    assert t.aborted and conn.close_code == 1006  # cut without a close handshake a dead peer would never answer


async def test_token_expiring_refresh_and_expiry_in_virtual_time(nursery, autojump_clock):
    layer = await Layer(nursery, heartbeat_interval=10_000.0).start()  # this client does not read between steps
    t, conn = layer.connect()
    ok = await auth(t, layer.token(ttl=120))
    assert ok["payload"]["expiresAt"] == int((T0 + 120) * 1000)
    warning = await t.client_receive()  # due at exp - 60 s
    assert warning["type"] == "token_expiring" and layer.elapsed() == pytest.approx(60, abs=0.05)
    await trio.sleep(30)  # refresh at T0 + 90 with a token valid until T0 + 390
    t.client_send({"type": "auth", "id": "a2", "timestamp": 0, "payload": {"token": layer.token(ttl=300)}})
    refreshed = await t.client_receive()
    assert refreshed["type"] == "auth_ok", refreshed
    assert refreshed["payload"]["expiresAt"] == int((T0 + 390) * 1000)
    await trio.sleep(100)  # past the first token's exp: still open
    assert not conn.closing
    frames = []
    with trio.fail_after(400):
        while True:
            try:
                frames.append(await t.client_receive())
            except Exception:
                break
    assert [f["type"] for f in frames] == ["token_expiring", "error"]
    assert frames[1]["payload"]["code"] == "token_expired" and conn.close_code == 4002
    assert layer.elapsed() == pytest.approx(390, abs=0.05)


async def test_an_idle_connection_gets_events_written_directly_without_a_writer_task(layer, autojump_clock):
    t, conn = layer.connect()
    await auth(t, layer.token())
    t.client_send({"type": "subscribe", "id": "s1", "timestamp": 0, "payload": {"channel": "d.c"}})
    assert (await t.client_receive())["type"] == "subscribed"
    traffic = layer.node.metrics.traffic
    direct, queued = traffic.direct_writes, traffic.queued_writes
    await layer.publish("d.c", b'{"n":1}', n=3)
    assert [(await t.client_receive())["seq"] for _ in range(3)] == [1, 2, 3]
    assert traffic.direct_writes - direct == 3 and traffic.queued_writes == queued
    assert not conn._writer_running and len(conn.outbox) == 0


async def test_partial_writes_continue_through_the_writer_in_order(layer, autojump_clock):
    t, conn = layer.connect(capacity=700)  # the "socket" takes 700 bytes the client has not read
    await auth(t, layer.token())
    t.client_send({"type": "subscribe", "id": "s1", "timestamp": 0, "payload": {"channel": "p.c"}})
    assert (await t.client_receive())["type"] == "subscribed"
    blob = b'{"blob":"' + b"x" * 300 + b'"}'
    await layer.publish("p.c", blob, n=6)  # ~2.4 KB: the first write is partial, the rest queues
    assert len(conn.outbox) > 0 and conn._writer_running
    got = [(await t.client_receive())["seq"] for _ in range(6)]
    assert got == [1, 2, 3, 4, 5, 6]
    assert layer.node.metrics.traffic.queued_writes >= 1
    with trio.fail_after(1):
        while conn._writer_running:
            await trio.sleep(0)
    assert len(conn.outbox) == 0  # the writer task ended with the queue


async def test_a_client_that_reads_nothing_is_a_slow_consumer(nursery, autojump_clock):
    layer = await Layer(nursery, send_queue_size=16).start()
    t, conn = layer.connect(capacity=0)  # nothing ever fits: not even auth_ok is read
    t.client_send({"type": "auth", "id": "a1", "timestamp": 0, "payload": {"token": layer.token()}})
    t.client_send({"type": "subscribe", "id": "s1", "timestamp": 0, "payload": {"channel": "s.c"}})
    while "s.c" not in conn.subscriptions:
        await trio.sleep(0.01)
    await trio.sleep(1)
    await layer.publish("s.c", n=40)
    await closed(conn)
    assert conn.close_code == 4009
    assert t.aborted  # its 4009 could not get through a full socket within the heartbeat timeout


async def test_catch_up_interleaved_with_live_publishes_delivers_each_seq_once(layer, autojump_clock):
    await layer.publish("r.c", b'{"n":0}', n=1200)  # three replay pages
    t, conn = layer.connect(capacity=4096)
    await auth(t, layer.token())
    t.client_send({"type": "subscribe", "id": "s1", "timestamp": 0, "payload": {"channel": "r.c", "lastSeq": 0}})
    sub = (await t.client_receive())["payload"]
    assert (sub["recovery"], sub["replayCount"]) == ("replay", 1200)

    async def publish_meanwhile() -> None:
        for _ in range(50):
            await layer.publish("r.c", b'{"n":1}')
            await trio.sleep(0.001)

    layer.nursery.start_soon(publish_meanwhile)
    seqs = []
    while len(seqs) < 1250:
        frame = await t.client_receive()
        seqs.append(frame["seq"])
        if len(seqs) % 100 == 0:
            await trio.sleep(0.001)  # a slow-ish reader: live events land mid-replay
    assert seqs == list(range(1, 1251))
    assert layer.node.metrics.traffic.replayed >= 1200


async def test_a_group_commit_reaches_an_idle_connection_in_one_write(layer, autojump_clock):
    t, conn = layer.connect()
    await auth(t, layer.token())
    t.client_send({"type": "subscribe", "id": "s1", "timestamp": 0, "payload": {"channel": "g.c"}})
    assert (await t.client_receive())["type"] == "subscribed"
    committed = []
    dispatch, layer.store.on_commit = layer.store.on_commit, committed.extend  # hold the announcements...
    await layer.publish("g.c", n=5)
    layer.store.on_commit = dispatch
    writes = t.writes
    layer.node.hub.dispatch_many(committed)  # ...and announce them as one commit, as SQLite does
    assert t.writes - writes == 1  # one vectored write for the five frames
    assert [(await t.client_receive())["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
    assert conn.subscriptions["g.c"].last_sent_seq == 5
