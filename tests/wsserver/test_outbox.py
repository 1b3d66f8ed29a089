"""The per-connection queue on its own: bounds in frames and in bytes, the soft limit replies
wait for, prefixes taken by bytes, and the waits for the queue to be written."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from wsserver.outbox import Outbox


def item(n: int, size: int = 10) -> tuple:
    return (b"h", b"x" * size, None, n)


@pytest.mark.parametrize(
    "capacity, capacity_bytes, sizes, accepted",
    [
        (3, 1 << 20, [10, 10, 10, 10], 3),  # frames bound
        (100, 100, [40, 40, 40], 2),  # bytes bound (payloads count)
        (100, 100, [150], 0),  # one frame larger than the byte bound is refused
    ],
)
def test_offer_bounds(capacity, capacity_bytes, sizes, accepted):
    box = Outbox(capacity, capacity_bytes)
    results = [box.offer(item(i, size)) for i, size in enumerate(sizes)]
    assert results.count(True) == accepted and results[accepted:] == [False] * (len(sizes) - accepted)
    assert box.bytes == sum(len(b"h") + s for s in sizes[:accepted])


def test_take_a_prefix_by_bytes_and_bookkeeping():
    box = Outbox(100)
    for i in range(5):
        box.offer(item(i, 99))  # 100 bytes each with the header
    batch = box.take(max_bytes=250)
    assert [x[3] for x in batch] == [0, 1] and box.bytes == 300 and box.writing
    box.written()
    assert [x[3] for x in box.take()] == [2, 3, 4] and box.bytes == 0
    box.written()
    assert box.take() == [] and box.peak == 5


async def test_room_waits_below_the_soft_limit_and_closing_releases_it():
    box = Outbox(4)
    box.offer(item(1))
    box.offer(item(2))  # soft limit: half of 4
    waited = []

    async def reply() -> None:
        await box.room()
        waited.append(True)
        box.push(item(3))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reply)
        await trio.testing.wait_all_tasks_blocked()
        assert waited == []
        box.take()
        box.written()
    assert waited == [True] and len(box) == 1


async def test_drained_waits_for_the_write_in_progress_even_when_closed():
    box = Outbox(8)
    box.offer(item(1))
    batch = box.take()
    box.close()
    done = []

    async def wait() -> None:
        await box.drained()
        done.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [] and batch  # the writer still holds its batch
        box.written()
    assert done == [True]


async def test_flushed_returns_once_closed_and_nothing_is_pushed_after():
    box = Outbox(8)
    box.offer(item(1))
    box.close(discard=True)
    await box.flushed()
    assert not box.offer(item(2)) and len(box) == 0
    box.push(item(3))
    assert len(box) == 0
