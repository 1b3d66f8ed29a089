"""One connection's client publishes: each `publish` frame is queued for the store at once, in
frame order, and answered (`published` or `error`) in frame order once durable. A client's
consecutive publishes share group commits instead of paying one fsync each, and every subscriber
gets them in one write (bench/results/profile.md). The answerer task exists only while answers
are pending."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson
import trio

from wsserver.codes import ErrorCode
from wsserver.limits import json_depth_exceeds
from wsserver.node import user_scope
from wsserver.protocol import Envelope, PublishedFrame, PublishedPayload, PublishFrame, new_id, now_ms
from wsserver.store.base import AppendResult, PendingAppend, StoreUnavailable

if TYPE_CHECKING:
    from wsserver.auth import Claims
    from wsserver.node import Node

#: Client publishes of one connection queued for the store before its reader waits.
MAX_IN_FLIGHT: Final = 64
#: What a client is told when storage fails (never the internal details: they go to the log).
UNAVAILABLE: Final = "publish not stored: event storage is unavailable right now; send it again later with the same id"


class Connection(Protocol):
    """What publishing needs of its connection (``connection.core.Connection``)."""

    node: Node
    claims: Claims | None
    user_id: str | None

    async def send(self, frame: Envelope) -> None: ...
    async def error(self, code: ErrorCode, message: str, ref: str | None = None) -> None: ...
    async def unavailable(self, message: str, exc: BaseException, ref: str | None) -> None: ...
    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool: ...


def published(ref: str, result: AppendResult) -> PublishedFrame:
    return PublishedFrame(
        id=new_id(),
        timestamp=now_ms(),
        ref=ref,
        channel=result.channel,
        payload=PublishedPayload(channel=result.channel, seq=result.seq, epoch=result.epoch),
    )


class Publishing:
    """The publish pipeline of one connection (created by its first publish)."""

    __slots__ = ("conn", "_queue", "_idle")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._queue: deque[tuple[str, PendingAppend, float]] = deque()
        self._idle: trio.Event | None = None

    async def answered(self) -> None:
        """Waits until every queued publish has been answered (before answering anything else)."""
        if self._queue and self._idle is not None:
            await self._idle.wait()

    async def submit(self, frame: PublishFrame) -> None:
        conn = self.conn
        node = conn.node
        p = frame.payload
        assert conn.claims is not None and conn.user_id is not None
        problem = None
        if not conn.claims.grants.can_publish(p.channel):
            problem = (ErrorCode.FORBIDDEN, f"the token does not grant publishing to {p.channel!r}")
        elif json_depth_exceeds(p.data, node.config.max_json_depth):
            problem = (ErrorCode.BAD_REQUEST, f"data nests deeper than {node.config.max_json_depth} levels")
        if problem is not None:
            await self.answered()  # answers stay in frame order
            await conn.error(*problem, frame.id)
            return
        args = (p.channel, p.event, orjson.dumps(p.data))
        kwargs = dict(event_id=new_id(), idem_scope=user_scope(conn.user_id), idem_key=frame.id)
        started = trio.current_time()
        try:
            pending = node.begin_publish(*args, **kwargs)
        except trio.WouldBlock:  # the store's queue is full: wait our turn like everyone else
            await self.answered()
            try:
                result = await node.publish(*args, **kwargs, source="websocket")
            except StoreUnavailable as exc:
                await conn.unavailable(UNAVAILABLE, exc, frame.id)
                return
            await conn.send(published(frame.id, result))
            return
        except StoreUnavailable as exc:
            await self.answered()
            await conn.unavailable(UNAVAILABLE, exc, frame.id)
            return
        self._queue.append((frame.id, pending, started))
        if self._idle is None or self._idle.is_set():
            # No answerer running (the last one saw the queue empty and ended): start one.
            self._idle = trio.Event()
            if not conn.spawn(self._answer, self._idle):
                self._idle.set()
        elif len(self._queue) >= MAX_IN_FLIGHT:
            await self.answered()

    async def _answer(self, idle: trio.Event) -> None:
        """Answers queued publishes in frame order as they become durable, every answer that is
        ready at once in one write (a group commit completes many); ends when none is left."""
        conn, queue = self.conn, self._queue
        try:
            while queue:
                frame_id, pending, started = queue[0]
                try:
                    await pending.wait()
                except StoreUnavailable:
                    pass  # answered below, in order
                answers = []
                while queue and queue[0][1].done.is_set():
                    frame_id, pending, started = queue.popleft()
                    if pending.error is not None:
                        if answers:
                            await conn.send_many(answers)
                            answers = []
                        await conn.unavailable(UNAVAILABLE, pending.error, frame_id)
                        continue
                    assert pending.result is not None
                    conn.node.count_publish(pending.result, started, "websocket")
                    answers.append(published(frame_id, pending.result))
                if answers:
                    await conn.send_many(answers)
        finally:
            # No checkpoint between the last `while queue` check and this: a publish queued from
            # now on sees `idle` set and starts the next answerer; exactly one runs at a time.
            idle.set()
