"""One WebSocket connection: its protocol state (AWAIT_AUTH → LIVE → CLOSING), supervision and
frame dispatch, and the write path every frame of it takes.

Supervision: one nursery per connection. The reader runs inline in the connection's own task;
the other tasks exist only while there is work: the writer while frames wait for the socket,
the publish answerer while publishes wait for the store, a catch-up while a subscription reads
the store. Deadlines (heartbeat, auth timeout, token) are served by the node-wide timer wheel
(``connection.timers``). Any task failing ends this connection (1011), never the server.

Write path (``_push``): when nothing is queued and no write is in progress, a frame goes straight
to the socket with one non-blocking vectored write, right where it was produced (for a live event:
inside the fan-out pass, with no task wake-up); only what the socket does not take at once is
queued, and a writer task is started to wait for the socket. The queue keeps backpressure, the
slow-consumer close (4009) and ordering exactly as before.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Final

import trio

from wsserver.auth import AuthError, Claims
from wsserver.codes import CloseCode, ErrorCode
from wsserver.connection import catch_up, timers
from wsserver.connection.publishing import Publishing
from wsserver.framing import text_header
from wsserver.limits import FrameLimiter
from wsserver.outbox import Outbox
from wsserver.protocol import (
    AuthFrame,
    AuthOkFrame,
    AuthOkPayload,
    DecodeError,
    Envelope,
    PingFrame,
    PongFrame,
    PublishFrame,
    SubscribeFrame,
    UnsubscribedFrame,
    UnsubscribedPayload,
    UnsubscribeFrame,
    decode_client_frame,
    encode,
    error_frame,
    frame_ref,
    new_id,
    now_ms,
)
from wsserver.stats import ConnectionStats, SubscriptionStats
from wsserver.subscription import SubState, Subscription
from wsserver.transport import ConnectionClosed, PongWaiter, Transport

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wsserver.node import Node
    from wsserver.store.base import StoredEvent

log = logging.getLogger("wsserver.connection")

#: Seconds the writer gets to flush queued frames before a close frame; then the TCP is cut.
FLUSH_TIMEOUT: Final = 2.0
#: The `error rate_limited` message: the frame was not processed and may be sent again.
RATE_LIMITED_MESSAGE: Final = "too many frames or bytes per second: this frame was not processed; send it again shortly"


class Connection:
    """Protocol state and tasks of one connection. ``run()`` returns when the connection is done.

    Implements ``subscription.Owner`` (for its subscriptions), ``hub.Connected`` (for the node's
    registry) and ``timer_wheel.TimerClient`` (for its deadlines)."""

    __slots__ = (
        "node", "transport", "id", "remote", "query_token", "outbox", "subscriptions", "claims", "user_id",
        "connected_at", "last_seen", "rtt", "closing", "close_code", "close_reason", "frames_in", "_limiter",
        "_nursery", "_reader_scope", "_aborted", "_writer_running", "publishing", "_traffic",
        "timer_due", "timer_key", "auth_deadline", "next_ping", "pong", "warned",
    )

    def __init__(self, node: Node, transport: Transport, query_token: str | None = None) -> None:
        config = node.config
        self.node = node
        self.transport = transport
        self.id = secrets.token_hex(8)
        self.remote = transport.remote
        transport.on_control = self.queue_control  # pongs and close answers take the same ordered path
        self.query_token = query_token
        self.outbox = Outbox(config.send_queue_size, config.queue_bytes)
        self._traffic = node.metrics.traffic
        self.subscriptions: dict[str, Subscription] = {}
        self.claims: Claims | None = None
        self.user_id: str | None = None
        self.connected_at = node.wall_clock()
        now = trio.current_time()
        self.last_seen = now
        self.rtt: float | None = None
        self.closing = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.frames_in = 0
        self._limiter = FrameLimiter(config.rate_limit_frames, config.rate_limit_bytes)
        self._nursery: trio.Nursery | None = None
        self._reader_scope: trio.CancelScope | None = None
        self._aborted = False
        self._writer_running = False
        self.publishing: Publishing | None = None  # created by the first publish: most connections never publish
        # deadlines (connection.timers), served by the node's timer wheel
        self.timer_due: float | None = None
        self.timer_key = 0
        self.auth_deadline = now + config.auth_timeout
        self.next_ping = now + config.heartbeat_interval
        self.pong: PongWaiter | None = None
        self.warned: Claims | None = None

    # ------------------------------------------------------------------ supervision

    async def run(self) -> None:
        """Runs the connection to its end and closes it with the right code. Never raises
        (except Cancelled): a failure here ends this connection, never the server."""
        node = self.node
        node.hub.add_connection(self)
        node.metrics.connections_total.inc()
        try:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    node.timers.schedule(self, timers.next_deadline(self))
                    with trio.CancelScope() as self._reader_scope:
                        await self._reader()
                    node.timers.schedule(self, None)
                    await self._flush_before_close()
                    nursery.cancel_scope.cancel()
            except Exception as exc:  # a task of this connection failed: end it, not the server
                log.exception("connection %s failed: %s", self.id, exc)
                self._set_close(CloseCode.INTERNAL_ERROR, "internal error")
            self._nursery = None
            if self._aborted:
                await self.transport.abort()
            elif self.transport.close_code is None:
                await self.transport.close(self.close_code or CloseCode.NORMAL, self.close_reason)
        finally:
            self._cleanup()

    async def _flush_before_close(self) -> None:
        """Writes what is queued (e.g. the `error` explaining the close), bounded in time."""
        slow = self.close_code == CloseCode.SLOW_CONSUMER
        self.outbox.close(discard=self._aborted or slow)
        if self.outbox:
            self._start_writer()
        # A slow consumer's queue is dropped, but the write in progress must finish before its
        # 4009 can follow: give a reader that is merely slow the heartbeat timeout to take it (a
        # dead one is cut then, as the heartbeat would).
        wait = max(FLUSH_TIMEOUT, self.node.config.heartbeat_timeout) if slow else FLUSH_TIMEOUT
        with trio.move_on_after(wait) as flush:
            await self.outbox.drained()
        if flush.cancelled_caught:
            self._aborted = True

    def _cleanup(self) -> None:
        node = self.node
        node.timers.schedule(self, None)
        for sub in self.subscriptions.values():
            sub.end()
            node.hub.remove(sub)
        self.subscriptions.clear()
        node.hub.remove_connection(self)
        code = self.close_code if self.close_code is not None else (self.transport.close_code or 1006)
        node.note_closed(self, code, self.close_reason)
        log.info(
            "connection closed id=%s user=%s remote=%s code=%s reason=%r duration=%.1fs frames_in=%d",
            self.id, self.user_id or "-", self.remote, code, self.close_reason,
            node.wall_clock() - self.connected_at, self.frames_in,
        )

    def _set_close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = int(code)
            self.close_reason = reason
        self.closing = True

    def close_soon(self, code: int, reason: str) -> None:
        """Ends the connection with ``code`` after flushing queued frames. Synchronous."""
        self._set_close(code, reason)
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    def abort(self, reason: str) -> None:
        """Ends the connection without a close handshake (the peer is gone)."""
        self._aborted = True
        self.close_soon(1006, reason)

    def slow_consumer(self) -> None:
        """The queue overflowed (or a catch-up page was not taken in time): close 4009."""
        if not self.closing:
            self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: outgoing queue full")

    def spawn(self, fn, *args) -> bool:
        """Starts ``fn(*args)`` in this connection's nursery; False once the connection is closing."""
        if self._nursery is None or self.closing:
            return False
        self._nursery.start_soon(fn, *args)
        return True

    # ------------------------------------------------------------------ the write path

    def _push(self, head: bytes, body: bytes, sub: Subscription | None, seq: int, *, live: bool) -> bool:
        """Writes a frame now if the connection is idle, else queues it (see the module docstring).
        False when the queue is full: a live event then closes the connection as a slow consumer."""
        box = self.outbox
        if box.idle:
            n = self.transport.try_write([head, body])
            if n is not None:
                total = len(head) + len(body)
                traffic = self.node.metrics.traffic
                if n == total:
                    traffic.direct_writes += 1
                    traffic.direct_bytes += n
                    if sub is not None:
                        sub.written(seq)
                    return True
                if n:  # the socket took part of it: the rest goes first, through the writer
                    traffic.queued_bytes += n
                    rest = (head[n:], body) if n < len(head) else (b"", memoryview(body)[n - len(head):])
                    box.push((rest[0], rest[1], sub, seq))  # type: ignore[arg-type]
                    self._start_writer()
                    return True
        return self._queue((head, body, sub, seq), live)

    def _queue(self, item: tuple, live: bool) -> bool:
        box = self.outbox
        if not box.offer(item):  # type: ignore[arg-type]
            if box.closed:
                return True  # closing: nothing more goes out, and that is not an overflow
            if live:
                self.slow_consumer()
            return False
        self._start_writer()
        return True

    def _start_writer(self) -> None:
        if not self._writer_running and self._nursery is not None:
            self._writer_running = True
            self._nursery.start_soon(self._write_out)

    async def _write_out(self) -> None:
        """The writer: writes everything queued, one vectored write per round, then ends (an idle
        connection owns no writer task)."""
        box, transport, traffic = self.outbox, self.transport, self.node.metrics.traffic
        try:
            while batch := box.take():
                frames = [part for item in batch for part in item[:2] if part]
                try:
                    await transport.send_frames(frames)
                except ConnectionClosed:
                    box.close(discard=True)
                    self.close_soon(1006, "connection lost")
                    return
                finally:
                    box.written()
                for _head, _body, sub, seq in batch:
                    if sub is not None:
                        sub.written(seq)
                traffic.queued_frames += len(batch)
                traffic.queued_writes += 1
                traffic.queued_bytes += sum(map(len, frames))
                del batch, frames  # nothing written stays referenced while idle
        finally:
            self._writer_running = False

    def send_event(self, sub: Subscription, ev: StoredEvent) -> bool:
        """``subscription.Owner``: a live event's frame, now (the fan-out's hot path, never awaits):
        one ``write`` of the event's shared frame when the connection is idle, else the queue."""
        if self.outbox.idle:
            wire = ev.wire
            n = self.transport.write_now(wire)
            if n == len(wire):
                sub.last_sent_seq = ev.seq
                traffic = self._traffic
                traffic.direct_writes += 1
                traffic.direct_bytes += n
                return True
            if n:  # the socket took part of it: the rest goes first, through the writer
                self._traffic.queued_bytes += n
                self.outbox.push((memoryview(wire)[n:], b"", sub, ev.seq))  # type: ignore[arg-type]
                self._start_writer()
                return True
        return self._queue((ev.head, ev.frame, sub, ev.seq), True)

    def send_events(self, sub: Subscription, events: list[StoredEvent]) -> bool:
        """``subscription.Owner``: consecutive live events, now: one vectored write of their shared
        frames when the connection is idle (a group commit's events cost one syscall, not one
        each), else queued in order; all or none fit."""
        box = self.outbox
        if box.idle:
            wires = [ev.wire for ev in events]
            n = self.transport.try_write(wires)
            if n is not None:
                traffic = self._traffic
                if n == sum(map(len, wires)):
                    sub.last_sent_seq = events[-1].seq
                    traffic.direct_writes += len(events)
                    traffic.direct_bytes += n
                    return True
                traffic.queued_bytes += n
                i = 0
                while n >= len(wires[i]):  # whole frames written
                    n -= len(wires[i])
                    i += 1
                if i:
                    sub.last_sent_seq = events[i - 1].seq
                    traffic.direct_writes += i
                box.push((memoryview(wires[i])[n:], b"", sub, events[i].seq))  # type: ignore[arg-type]
                for ev in events[i + 1:]:
                    if not box.offer((ev.head, ev.frame, sub, ev.seq)):
                        self.slow_consumer()
                        return False
                self._start_writer()
                return True
        if box.capacity - len(box) < len(events):
            self.slow_consumer()
            return False
        for ev in events:
            if not self._queue((ev.head, ev.frame, sub, ev.seq), True):
                return False
        return True

    def queue_frame(self, frame: Envelope) -> None:
        """A server frame, now, without waiting (timers); a full queue closes the connection."""
        body = encode(frame)
        self._push(text_header(len(body)), body, None, 0, live=True)

    def queue_control(self, framed: bytes) -> None:
        """A pre-framed control frame (a ping), now, without waiting."""
        self._push(framed, b"", None, 0, live=True)

    async def send(self, frame: Envelope) -> None:
        """A reply frame, with backpressure: waits while the queue is over half full."""
        body = encode(frame)
        await self.outbox.room()
        self._push(text_header(len(body)), body, None, 0, live=False)

    async def send_many(self, frames: list[Envelope]) -> None:
        """Reply frames together (e.g. the answers to the publishes of one group commit): one
        vectored write when the connection is idle, instead of one write each."""
        parts: list[bytes] = []
        for frame in frames:
            body = encode(frame)
            parts += (text_header(len(body)), body)
        await self.outbox.room()
        if self.outbox.idle:
            n = self.transport.try_write(parts)
            if n is not None and n == sum(map(len, parts)):
                self._traffic.direct_writes += len(frames)
                self._traffic.direct_bytes += n
                return
            if n:  # part of it went out: queue the rest, frame by frame, in order
                self._traffic.queued_bytes += n
                rest = []
                for i in range(0, len(parts), 2):
                    size = len(parts[i]) + len(parts[i + 1])
                    if n >= size:
                        n -= size
                        continue
                    joined = parts[i] + parts[i + 1]
                    rest.append((joined[n:], b"", None, 0))
                    n = 0
                for item in rest:
                    self.outbox.push(item)  # type: ignore[arg-type]
                self._start_writer()
                return
        for i in range(0, len(parts), 2):
            self._queue((parts[i], parts[i + 1], None, 0), False)

    async def send_for(self, sub: Subscription, frame: Envelope) -> bool:
        """A frame of ``sub``'s channel, unless the subscription ended while we waited for room:
        nothing of a channel is ever queued after its `unsubscribed`. False: ended."""
        body = encode(frame)
        await self.outbox.room()
        if not self.owns(sub):
            return False
        self._push(text_header(len(body)), body, None, 0, live=False)
        return True

    async def send_stored(self, sub: Subscription, ev: StoredEvent) -> bool:
        """A stored event of a catch-up: waits for room, then checks ``sub`` still owns its channel
        and that ``ev`` continues its position (``LostPosition`` otherwise). False: ended."""
        await self.outbox.room()
        if not self.owns(sub):
            return False
        sub.accept_stored(ev)
        self._push(ev.head, ev.frame, sub, ev.seq, live=False)
        return True

    async def error(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        self.node.metrics.errors.labels(code.value).inc()
        await self.send(error_frame(code, message, ref))

    def queue_error(self, code: ErrorCode, message: str) -> None:
        self.node.metrics.errors.labels(code.value).inc()
        self.queue_frame(error_frame(code, message))

    async def unavailable(self, message: str, exc: BaseException, ref: str | None) -> None:
        """A store or backplane failure: the client gets plain words, the log gets the details."""
        log.debug("connection %s: %s (%s)", self.id, message, exc)  # the store logs each failure once
        await self.error(ErrorCode.UNAVAILABLE, message, ref)

    # ------------------------------------------------------------------ subscriptions (Owner)

    def owns(self, sub: Subscription) -> bool:
        """``sub`` is still this connection's subscription (not unsubscribed, revoked or closed)."""
        return sub.state is not SubState.ENDED and not self.closing

    def start_catch_up(self, sub: Subscription, cause: str) -> None:
        """``subscription.Owner``: catches ``sub`` up from the store in a task of this connection."""
        self.node.metrics.catch_ups.labels(cause).inc()
        if not self.spawn(catch_up.catch_up_task, self, sub):
            sub.end()

    def drop_subscription(self, channel: str) -> Subscription | None:
        sub = self.subscriptions.pop(channel, None)
        if sub is not None:
            sub.end()
            self.node.hub.remove(sub)
        return sub

    # ------------------------------------------------------------------ the reader and dispatch

    async def _reader(self) -> None:
        if self.query_token is not None:
            await self._authenticate(self.query_token, ref=None)
        handlers = {
            AuthFrame: self._on_auth,
            SubscribeFrame: self._on_subscribe,
            UnsubscribeFrame: self._on_unsubscribe,
            PublishFrame: self._on_publish,
            PingFrame: self._on_ping,
        }
        traffic = self.node.metrics.traffic
        while not self.closing:
            try:
                message = await self.transport.receive()
            except ConnectionClosed as exc:
                reason = exc.reason
                code = reason.code if reason is not None else 1006
                self.close_soon(code, "message too big" if code == CloseCode.MESSAGE_TOO_BIG else "peer closed")
                return
            self.last_seen = trio.current_time()
            self.frames_in += 1
            traffic.frames_in += 1
            if not self._limiter.allow(len(message)):
                # Never dropped silently (CONTRACT §4): the request is answered with its `ref`, so
                # the client knows to send it again; a flood is cut by 4029 after FLOOD_STRIKES.
                await self.error(ErrorCode.RATE_LIMITED, RATE_LIMITED_MESSAGE, frame_ref(message))
                if self._limiter.flooding:
                    self.close_soon(CloseCode.RATE_LIMITED, "rate limited: too many frames")
                    return
                continue
            if isinstance(message, bytes):
                await self.error(ErrorCode.BAD_REQUEST, "binary frames are not accepted: send JSON text frames")
                continue
            frame = decode_client_frame(message)
            if isinstance(frame, DecodeError):
                await self.error(frame.code, frame.message, frame.ref)
                continue
            if self.claims is None and not isinstance(frame, (AuthFrame, PingFrame)):
                await self.error(
                    ErrorCode.UNAUTHENTICATED, f"send `auth` first; `{frame.TYPE}` needs an authenticated connection", frame.id
                )
                continue
            if self.publishing is not None and not isinstance(frame, PublishFrame):
                await self.publishing.answered()  # one connection's frames are answered in order
            await handlers[type(frame)](frame)

    async def _on_ping(self, frame: PingFrame) -> None:
        await self.send(PongFrame(id=new_id(), timestamp=now_ms(), ref=frame.id))

    async def _on_auth(self, frame: AuthFrame) -> None:
        await self._authenticate(frame.payload.token, ref=frame.id)

    async def _authenticate(self, token: str, ref: str | None) -> None:
        node = self.node
        first = self.claims is None
        try:
            claims = await node.verifier.authenticate(token)
        except AuthError as exc:
            node.metrics.auth_failures.labels(exc.reason).inc()
            await self.error(ErrorCode.AUTH_FAILED, str(exc), ref)
            if first:
                self.close_soon(CloseCode.AUTH_FAILED, "auth failed")
            return
        if first and not self.transport.admit_user(claims.sub):
            await self.error(ErrorCode.LIMIT_EXCEEDED, "too many connections for this user", ref)
            self.close_soon(CloseCode.RATE_LIMITED, "too many connections for this user")
            return
        if not first and claims.sub != self.user_id:
            await self.error(ErrorCode.FORBIDDEN, "a refresh must keep the same `sub`", ref)
            self.close_soon(CloseCode.FORBIDDEN, "sub changed on refresh")
            return
        auth_ok = AuthOkFrame(
            id=new_id(),
            timestamp=now_ms(),
            ref=ref,
            payload=AuthOkPayload(
                session_id=self.id,
                user_id=claims.sub,
                expires_at=int(claims.expires * 1000),
                heartbeat_interval=int(node.config.heartbeat_interval * 1000),
                max_message_size=node.config.max_message_size,
            ),
        )
        body = encode(auth_ok)
        await self.outbox.room()
        if self.closing:
            return
        # From here to the end of the block, no checkpoint: `auth_ok` is queued before the new
        # token's deadlines can fire (`token_expiring` never overtakes it).
        self._push(text_header(len(body)), body, None, 0, live=False)
        self.claims = claims
        if first:
            self.user_id = claims.sub
            log.info("connection open id=%s user=%s remote=%s", self.id, claims.sub, self.remote)
        node.timers.schedule(self, timers.next_deadline(self))  # the token's deadlines replace the auth timeout
        if not first:
            for channel in [c for c in self.subscriptions if not claims.grants.can_subscribe(c)]:
                self.drop_subscription(channel)  # ends it now: nothing of it follows the frame below
                await self.send(
                    UnsubscribedFrame(
                        id=new_id(),
                        timestamp=now_ms(),
                        channel=channel,
                        payload=UnsubscribedPayload(channel=channel, reason="the refreshed token no longer grants this channel"),
                    )
                )

    async def _on_unsubscribe(self, frame: UnsubscribeFrame) -> None:
        channel = frame.payload.channel
        self.drop_subscription(channel)
        await self.send(
            UnsubscribedFrame(
                id=new_id(), timestamp=now_ms(), ref=frame.id, channel=channel, payload=UnsubscribedPayload(channel=channel)
            )
        )

    async def _on_publish(self, frame: PublishFrame) -> None:
        if self.publishing is None:
            self.publishing = Publishing(self)
        await self.publishing.submit(frame)

    async def _on_subscribe(self, frame: SubscribeFrame) -> None:
        p = frame.payload
        assert self.claims is not None
        config = self.node.config
        if not self.claims.grants.can_subscribe(p.channel):
            await self.error(ErrorCode.FORBIDDEN, f"the token does not grant channel {p.channel!r}", frame.id)
            return
        if p.channel in self.subscriptions:
            await self.error(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {p.channel!r}", frame.id)
            return
        if len(self.subscriptions) >= config.max_channels_per_connection:
            await self.error(
                ErrorCode.LIMIT_EXCEEDED, f"at most {config.max_channels_per_connection} channels per connection", frame.id
            )
            return
        sub = Subscription(p.channel, self)
        # Register before reading the store: from here on live events are buffered.
        self.subscriptions[p.channel] = sub
        self.node.hub.add(sub)
        await catch_up.subscribe(self, sub, p.last_seq, p.epoch, frame.id)

    # ------------------------------------------------------------------ deadlines

    def on_timer(self, now: float) -> float | None:
        """``timer_wheel.TimerClient``: see ``connection.timers``."""
        return timers.on_timer(self, now)

    def trio_time(self, wall: float) -> float:
        """A wall-clock time (seconds since the Unix epoch) as a Trio clock time."""
        return trio.current_time() + (wall - self.node.wall_clock())

    # ------------------------------------------------------------------ statistics

    def token_expires_in(self) -> float | None:
        if self.claims is None:
            return None
        return max(0.0, self.claims.expires - self.node.wall_clock())

    def statistics(self, now: float, heads: Mapping[str, int]) -> ConnectionStats:
        """A frozen snapshot of this connection for `/api/v1/stats` (``now``: wall clock)."""
        subs = []
        for sub in self.subscriptions.values():
            head = max(heads.get(sub.channel, 0), sub.last_seq)
            subs.append(
                SubscriptionStats(
                    channel=sub.channel,
                    epoch=sub.epoch,
                    state=sub.state.value,
                    last_sent_seq=sub.last_sent_seq,
                    last_queued_seq=sub.last_seq,
                    head_seq=head,
                    lag=max(0, head - sub.last_sent_seq),
                )
            )
        box = self.outbox.statistics()
        expires_in = self.token_expires_in()
        return ConnectionStats(
            connection_id=self.id,
            node_id=self.node.node_id,
            user_id=self.user_id,
            remote=self.remote,
            connected_at=int(self.connected_at * 1000),
            connected_for=round(now - self.connected_at, 3),
            queue_depth=box.queued,
            queue_capacity=box.capacity,
            queue_peak=box.peak,
            rtt_ms=None if self.rtt is None else round(self.rtt * 1000, 3),
            token_expires_in=None if expires_in is None else round(expires_in, 3),
            max_lag=max((s.lag for s in subs), default=0),
            frames_in=self.frames_in,
            subscriptions=subs,
        )


__all__ = ["Connection", "SubState"]
