"""The event-store contract suite (``wsserver.store.base``): functions that take a harness which
opens a store, so the embedded SQLite log and the Redis log are held to exactly the same rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import pytest
import trio

from wsserver.config import Retention
from wsserver.protocol import encode_event
from wsserver.store.base import AppendRequest, EventStore, SnapshotAhead

DEFAULT_RETENTION = Retention(ttl=3600.0, max_events=10_000)


class StoreHarness(Protocol):
    def open(self, retention: Callable[[str], Retention] = ...) -> AbstractAsyncContextManager[EventStore]:
        """Opens a store on the harness's backing (the same data each time) until the block exits."""

    def lose_data(self) -> None:
        """Loses everything stored (data directory wiped, Redis restarted without persistence)."""


_counter = 0


def request(channel: str, *, idem: str | None = None, scope: str = "api", data: bytes = b'{"n":1}',
            ts: int | None = None) -> AppendRequest:
    global _counter
    _counter += 1
    return AppendRequest(
        channel=channel, event_type="test.event", data_json=data, event_id=f"ev-{_counter}",
        timestamp=ts if ts is not None else int(time.time() * 1000), idem_scope=scope, idem_key=idem,
    )


async def sequencing(h: StoreHarness) -> None:
    async with h.open() as store:
        results = [await store.append(request("a")) for _ in range(5)]
        assert [r.seq for r in results] == [1, 2, 3, 4, 5]
        assert len({r.epoch for r in results}) == 1
        assert (await store.append(request("b"))).seq == 1
        pos = await store.position("a")
        assert (pos.head_seq, pos.oldest_seq, pos.epoch) == (5, 1, results[0].epoch)
        empty = await store.position("never-written")
        assert (empty.head_seq, empty.oldest_seq) == (0, 0)


async def concurrent_appends_gapless(h: StoreHarness) -> None:
    async with h.open() as store:
        seqs: dict[str, list[int]] = {"c1": [], "c2": [], "c3": []}

        async def publisher(i: int) -> None:
            channel = f"c{i % 3 + 1}"
            result = await store.append(request(channel, data=b'{"i":%d}' % i))
            seqs[channel].append(result.seq)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(300):
                    nursery.start_soon(publisher, i)
        for channel, got in seqs.items():
            assert sorted(got) == list(range(1, 101)), channel
            events = await store.read_after(channel, 0, 1000)
            assert [e.seq for e in events] == list(range(1, 101))
            assert len({e.id for e in events}) == 100


async def frames_are_the_wire_form(h: StoreHarness) -> None:
    async with h.open() as store:
        req = request("frames", data=b'{"text":"h\\u00e9llo \\"x\\"","n":[1,2]}')
        result = await store.append(req)
        (ev,) = await store.read_after("frames", 0, 10)
        assert ev.frame == encode_event(
            event_type=req.event_type, event_id=req.event_id, timestamp=req.timestamp, channel="frames",
            seq=result.seq, epoch=result.epoch, data_json=req.data_json,
        )
        assert (ev.id, ev.type, ev.timestamp, ev.epoch, ev.seq) == (req.event_id, req.event_type, req.timestamp,
                                                                     result.epoch, 1)


async def idempotency(h: StoreHarness) -> None:
    async with h.open() as store:
        first = await store.append(request("idem", idem="p-1"))
        await store.append(request("idem"))
        again = await store.append(request("idem", idem="p-1"))
        assert again.duplicate and not first.duplicate
        assert (again.seq, again.epoch, again.event_id) == (first.seq, first.epoch, first.event_id)
        other_scope = await store.append(request("idem", idem="p-1", scope="user:bob"))
        assert not other_scope.duplicate and other_scope.seq == 3
        assert [e.seq for e in await store.read_after("idem", 0, 10)] == [1, 2, 3]

        # concurrent retries of one id store one event
        results = []

        async def retry() -> None:
            results.append(await store.append(request("idem", idem="p-2")))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(retry)
        assert sum(not r.duplicate for r in results) == 1
        assert len({r.seq for r in results}) == 1
        assert (await store.position("idem")).head_seq == 4


async def reads(h: StoreHarness) -> None:
    async with h.open() as store:
        for _ in range(10):
            await store.append(request("r"))
        assert [e.seq for e in await store.read_after("r", 3, 4)] == [4, 5, 6, 7]
        assert await store.read_after("r", 10, 5) == []
        one = await store.read_one("r", 6)
        assert one is not None and one.seq == 6
        assert await store.read_one("r", 11) is None
        assert await store.read_after("nothing", 0, 5) == []


async def snapshots(h: StoreHarness) -> None:
    async with h.open() as store:
        assert await store.get_snapshot("s") is None
        for _ in range(3):
            result = await store.append(request("s"))
        snap = await store.put_snapshot("s", 2, b'{"state":1}')
        assert (snap.seq, snap.epoch) == (2, result.epoch)
        got = await store.get_snapshot("s")
        assert got is not None and (got.seq, got.epoch, got.state_json) == (2, result.epoch, b'{"state":1}')
        with pytest.raises(SnapshotAhead):
            await store.put_snapshot("s", 4, b"{}")


async def retention_keeps_the_window(h: StoreHarness) -> None:
    """Trimming may happen at any time, but never inside the window (the last max_events)."""
    retention = Retention(ttl=3600.0, max_events=5)
    async with h.open(lambda channel: retention) as store:
        for _ in range(300):
            await store.append(request("t"))
        trim = getattr(store, "trim", None)
        if trim is not None:
            await trim()
        pos = await store.position("t")
        assert pos.head_seq == 300 and 1 <= pos.oldest_seq <= 296
        events = await store.read_after("t", 295, 10)
        assert [e.seq for e in events] == [296, 297, 298, 299, 300]
        stored = await store.read_after("t", 0, 1000)
        assert [e.seq for e in stored] == list(range(stored[0].seq, 301))


async def survives_reopen(h: StoreHarness) -> None:
    async with h.open() as store:
        results = [await store.append(request("d", idem=f"k{i}")) for i in range(3)]
        await store.put_snapshot("d", 2, b"{}")
    async with h.open() as store:
        pos = await store.position("d")
        assert (pos.head_seq, pos.epoch) == (3, results[0].epoch)
        assert [e.seq for e in await store.read_after("d", 0, 10)] == [1, 2, 3]
        assert (await store.append(request("d", idem="k1"))).duplicate
        assert (await store.append(request("d"))).seq == 4


async def lost_data_means_new_epoch(h: StoreHarness) -> None:
    async with h.open() as store:
        old = [await store.append(request("lost")) for _ in range(5)]
    h.lose_data()
    async with h.open() as store:
        fresh = await store.append(request("lost"))
        assert fresh.epoch != old[0].epoch, "a seq must never be reused under one epoch"
        pos = await store.position("lost")
        assert pos.epoch == fresh.epoch and pos.head_seq == fresh.seq
        assert all(e.epoch == fresh.epoch for e in await store.read_after("lost", 0, 10))


async def one_senders_appends_keep_their_order(h: StoreHarness) -> None:
    """Appends queued with ``append_nowait`` (how a connection pipelines its publishes) get seqs in
    call order, always: many rounds, each queued in small bursts so the store's writer forms many
    batches and has several in flight at once (the race that reordered seqs on Redis)."""
    async with h.open() as store:
        expected_head = 0
        for round_ in range(25):
            pendings = []
            for i in range(150):
                pendings.append(store.append_nowait(request("order", data=b'{"i":%d}' % i)))
                if i % 3 == 0:
                    await trio.sleep(0)  # let the writer take what is there: many small batches
            seqs = [(await p.wait()).seq for p in pendings]
            assert seqs == list(range(expected_head + 1, expected_head + 151)), f"round {round_}: {seqs}"
            expected_head += 150


async def trimming_only_from_the_front(h: StoreHarness) -> None:
    """Retention by age never leaves a hole: after the wall clock stepped back, a later event may
    carry an earlier time than an older one; the store still trims only a prefix of the log and
    keeps each channel's publish times non-decreasing."""
    now = int(time.time() * 1000)
    hour = 3600 * 1000
    retention = Retention(ttl=3600.0, max_events=10_000)
    async with h.open(lambda channel: retention) as store:
        for _ in range(5):
            await store.append(request("gap", ts=now - 2 * hour))  # old, expired
        for _ in range(5):
            await store.append(request("gap", ts=now - 5 * 60 * 1000))  # recent
        await store.append(request("gap", ts=now - 3 * hour))  # the clock stepped back
        stored = await store.read_after("gap", 0, 100)
        times = [e.timestamp for e in stored]
        assert times == sorted(times), "publish times of a channel never go backwards"
        trim = getattr(store, "trim", None)
        if trim is not None:
            await trim()
        for _ in range(3):  # Redis trims a little on each append
            await store.append(request("gap", ts=now))
        kept = [e.seq for e in await store.read_after("gap", 0, 100)]
        assert kept == list(range(kept[0], 15)), f"a hole in the log: {kept}"
        assert 11 in kept  # the stepped-back event is no older than the one before it


CONTRACT = [
    one_senders_appends_keep_their_order,
    trimming_only_from_the_front,
    sequencing,
    concurrent_appends_gapless,
    frames_are_the_wire_form,
    idempotency,
    reads,
    snapshots,
    retention_keeps_the_window,
    survives_reopen,
    lost_data_means_new_epoch,
]

