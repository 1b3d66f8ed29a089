"""Catching up: how a subscription gets from its position to LIVE through the durable store —
on `subscribe` (the recovery plan: replay, snapshot, reset or none, then the replayed events) and
whenever the live path or the backplane says events may be missing (a catch-up task of the
connection). The state transitions themselves are the subscription's (``wsserver.subscription``);
this module does the waiting: plans, store reads, room in the queue, the socket.

Never delivers a gap: a read that comes back empty below the planned head, or an event that does
not continue the position, raises ``LostPosition`` and the subscription is re-planned.

Each page is read and written while holding one of the node's catch-up slots, given back only once
the page left the queue: a node-wide bound on replayed bytes in memory (slots × REPLAY_PAGE_BYTES)
however many subscriptions catch up at once (a pub/sub reconnect makes all of them catch up).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

import orjson
import trio

from wsserver.codes import CloseCode
from wsserver.protocol import (
    Envelope,
    SnapshotFrame,
    SnapshotPayload,
    SubscribedFrame,
    SubscribedPayload,
    new_id,
    now_ms,
)
from wsserver.store.base import StoredEvent, StoreUnavailable
from wsserver.subscription import LostPosition

if TYPE_CHECKING:
    from wsserver.node import Node
    from wsserver.outbox import Outbox
    from wsserver.subscription import Subscription

log = logging.getLogger("wsserver.connection")

#: Events read from the store per page...
REPLAY_PAGE: Final = 500
#: ...and at most this many bytes of them (a page of 500 events of 64 KiB would be 32 MiB).
REPLAY_PAGE_BYTES: Final = 256 * 1024
#: Seconds a catching-up client gets to take one page before it counts as a slow consumer.
CATCH_UP_STALL: Final = 15.0
#: Times a subscription's position may be re-planned in a row (trimming or epoch races).
MAX_REPLANS: Final = 3
#: What a client is told when storage fails (the details go to the log).
UNAVAILABLE: Final = "subscribe failed: event storage is unavailable right now; try again later"


class Connection(Protocol):
    """What catching up needs of its connection (``connection.core.Connection``)."""

    id: str
    node: Node
    outbox: Outbox

    def owns(self, sub: Subscription) -> bool: ...
    async def send_for(self, sub: Subscription, frame: Envelope) -> bool: ...
    async def send_stored(self, sub: Subscription, ev: StoredEvent) -> bool: ...
    def drop_subscription(self, channel: str) -> Subscription | None: ...
    async def unavailable(self, message: str, exc: BaseException, ref: str | None) -> None: ...
    def slow_consumer(self) -> None: ...
    def close_soon(self, code: int, reason: str) -> None: ...


async def subscribe(conn: Connection, sub: Subscription, last_seq: int | None, epoch: str | None, ref: str) -> None:
    """A new subscription (registered in the hub, CATCHING_UP): makes sure this node receives the
    channel's events, then plans, answers `subscribed` and catches up."""
    node = conn.node
    try:
        await node.watch_channel(sub.channel)
        if last_seq is not None:
            node.metrics.catch_ups.labels("subscribe").inc()
        await establish(conn, sub, last_seq, epoch, ref)
    except StoreUnavailable as exc:
        conn.drop_subscription(sub.channel)
        await conn.unavailable(UNAVAILABLE, exc, ref)


async def establish(
    conn: Connection, sub: Subscription, last_seq: int | None, client_epoch: str | None, ref: str | None
) -> None:
    """Plans the recovery, sends `subscribed` (+ `snapshot`), catches up, and the subscription
    turns LIVE; re-plans (a `subscribed` without `ref`) when the position is lost meanwhile."""
    node = conn.node
    for _ in range(MAX_REPLANS):
        plan = await node.plan_subscription(sub.channel, last_seq, client_epoch)
        if not conn.owns(sub):
            return  # unsubscribed or closed meanwhile
        sub.start_at(plan.epoch, plan.start_seq)
        node.hub.note_head(sub.channel, plan.head_seq)
        subscribed = SubscribedFrame(
            id=new_id(),
            timestamp=now_ms(),
            ref=ref,
            channel=sub.channel,
            payload=SubscribedPayload(
                channel=sub.channel,
                epoch=plan.epoch,
                head_seq=plan.head_seq,
                recovery=plan.mode,
                replay_count=plan.head_seq - plan.start_seq,
            ),
        )
        if not await conn.send_for(sub, subscribed):
            return
        if plan.snapshot is not None:
            snapshot = SnapshotFrame(
                id=new_id(),
                timestamp=plan.snapshot.timestamp,
                channel=sub.channel,
                epoch=plan.epoch,
                payload=SnapshotPayload(state=orjson.loads(plan.snapshot.state_json), seq=plan.snapshot.seq),
            )
            if not await conn.send_for(sub, snapshot):
                return
        try:
            await run(conn, sub, plan.head_seq)
            return
        except LostPosition as lost:
            log.info("connection %s: %s; re-planning", conn.id, lost)
            node.metrics.catch_ups.labels("replan").inc()
            last_seq, client_epoch, ref = sub.last_seq, sub.epoch, None
    conn.close_soon(CloseCode.TRY_AGAIN_LATER, "channel position kept moving; resubscribe")


async def run(conn: Connection, sub: Subscription, head: int) -> None:
    """Streams stored events after the subscription's position through the connection, up to
    ``head`` (the head seq the plan saw), then ``sub.finish_catch_up()`` merges the live events
    buffered meanwhile and turns LIVE; reads the store again while that says so.

    Raises:
        LostPosition: the store does not continue the position (the caller re-plans).
    """
    node = conn.node
    traffic = node.metrics.traffic
    reread = False  # past the planned head: read until the store has nothing more
    while True:
        if sub.last_seq < head or reread:
            async with node.catch_up_slots:
                events = await node.read_after(sub.channel, sub.last_seq, REPLAY_PAGE, REPLAY_PAGE_BYTES)
                if not conn.owns(sub):
                    return
                if not events and sub.last_seq < head:
                    raise LostPosition(f"{sub.channel}: events {sub.last_seq + 1}..{head} are no longer stored")
                for ev in events:
                    if not await conn.send_stored(sub, ev):
                        return  # e.g. revoked by a token refresh: nothing more of it
                traffic.replayed += len(events)
                if events:
                    with trio.move_on_after(CATCH_UP_STALL) as stall:
                        await conn.outbox.flushed()
                    if stall.cancelled_caught:
                        conn.slow_consumer()
                        return
            if not conn.owns(sub):
                return
            if events:
                continue
        reread = False
        if sub.finish_catch_up():  # synchronous: merge and switch with no checkpoint between
            return
        reread = True


async def catch_up_task(conn: Connection, sub: Subscription) -> None:
    """A LIVE subscription found events may be missing: catch up from the store (a task of the
    connection, so the live path never waits); re-plan if its position is gone."""
    node = conn.node
    try:
        try:
            pos = await node.position(sub.channel)
            if pos.epoch != sub.epoch:
                raise LostPosition(f"{sub.channel}: the log's epoch changed under a live subscription")
            await run(conn, sub, pos.head_seq)
        except LostPosition as lost:
            if conn.owns(sub):
                log.info("connection %s: %s; re-planning", conn.id, lost)
                node.metrics.catch_ups.labels("replan").inc()
                await establish(conn, sub, sub.last_seq, sub.epoch, None)
    except StoreUnavailable as exc:
        log.warning("connection %s: catch-up of %s failed, closing 1011: %s", conn.id, sub.channel, exc)
        conn.close_soon(CloseCode.INTERNAL_ERROR, "storage unavailable")
