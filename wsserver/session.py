"""One WebSocket connection's protocol state machine (AWAIT_AUTH → LIVE → CLOSING) and its
supervision: one nursery runs the reader, heartbeat and token timer; the writer runs beside
them and drains the outbox before the close frame. Any task failing ends only this connection.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Final

import orjson
import trio

from wsserver.auth import AuthError, Claims
from wsserver.codes import CloseCode, ErrorCode
from wsserver.protocol import (
    AuthFrame,
    AuthOkFrame,
    AuthOkPayload,
    DecodeError,
    Envelope,
    PingFrame,
    PongFrame,
    PublishedFrame,
    PublishedPayload,
    PublishFrame,
    SnapshotFrame,
    SnapshotPayload,
    SubscribedFrame,
    SubscribedPayload,
    SubscribeFrame,
    TokenExpiringFrame,
    TokenExpiringPayload,
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
from wsserver.limits import FrameLimiter, json_depth_exceeds
from wsserver.node import user_scope
from wsserver.outbox import Outbox
from wsserver.recovery import merge_buffer
from wsserver.store.base import AppendResult, PendingAppend, StoreUnavailable
from wsserver.subscription import SubState, Subscription
from wsserver.framing import text_header
from wsserver.transport import ConnectionClosed, PongWaiter, WsTransport

if TYPE_CHECKING:
    from wsserver.node import Node

log = logging.getLogger("wsserver.session")

#: Events read from the store per page during a replay (each page streams through the outbox)...
REPLAY_PAGE: Final = 500
#: ...and at most this many bytes of them (a page of 500 events of 64 KiB would be 32 MiB).
REPLAY_PAGE_BYTES: Final = 256 * 1024
#: Seconds a catching-up client gets to take one page before it counts as a slow consumer.
CATCH_UP_STALL: Final = 15.0
#: Seconds the writer gets to flush queued frames before a close frame; then the TCP is cut.
FLUSH_TIMEOUT: Final = 2.0
#: Times a subscription's position may be re-planned in a row (trimming or epoch races).
MAX_REPLANS: Final = 3
#: What a client is told when storage fails (never the internal details: they go to the log).
PUBLISH_UNAVAILABLE: Final = "publish not stored: event storage is unavailable right now; send it again later with the same id"
SUBSCRIBE_UNAVAILABLE: Final = "subscribe failed: event storage is unavailable right now; try again later"
#: The `error rate_limited` message: the frame was not processed and may be sent again.
RATE_LIMITED_MESSAGE: Final = "too many frames or bytes per second: this frame was not processed; send it again shortly"
#: Client publishes of one connection queued for the store before its reader waits.
MAX_PUBLISHES_IN_FLIGHT: Final = 64


class _LostPosition(Exception):
    """The store no longer holds the events after a subscription's position (trimmed, or a new
    epoch appeared mid-replay): the subscription is re-planned (snapshot or reset)."""


class Session:
    """Protocol state and tasks of one connection. ``run()`` returns when the connection is done."""

    __slots__ = (
        "node", "transport", "id", "remote", "query_token", "outbox", "subscriptions",
        "claims", "user_id", "connected_at", "last_seen", "rtt", "closing", "close_code",
        "close_reason", "_tasks_scope", "_timers_scope", "_nursery", "_token_changed", "_aborted", "frames_in",
        "_writer_done", "_limiter", "_publishing", "_publishes_idle",
    )

    def __init__(self, node: Node, transport: WsTransport, query_token: str | None = None) -> None:
        self.node = node
        self.transport = transport
        self.id = secrets.token_hex(8)
        self.remote = transport.remote
        self.query_token = query_token
        self.outbox = Outbox(node.config.send_queue_size, node.config.send_queue_bytes)
        self.subscriptions: dict[str, Subscription] = {}
        self.claims: Claims | None = None
        self.user_id: str | None = None
        self.connected_at = node.wall_clock()
        self.last_seen = trio.current_time()
        self.rtt: float | None = None
        self.closing = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._tasks_scope: trio.CancelScope | None = None
        self._timers_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._token_changed = trio.Event()
        self._aborted = False
        self.frames_in = 0
        self._writer_done = trio.Event()
        self._limiter = FrameLimiter(node.config.rate_limit_frames, node.config.rate_limit_bytes)
        # created by the first publish: most connections of a mobile app never publish
        self._publishing: deque[tuple[str, PendingAppend, float]] | None = None
        self._publishes_idle: trio.Event | None = None

    # ------------------------------------------------------------------ supervision

    async def run(self) -> None:
        """Runs the connection to its end and closes it with the right code. Never raises
        (except Cancelled): a failure here ends this connection, never the server.

        The reader runs inline in the connection's own task; the writer and the timer task run
        in this session's nursery. (One timer task serves the heartbeat, the auth timeout and
        the token deadlines: every Trio task costs ~2 KiB per connection, and idle connections
        are what a mobile backend holds most of.)"""
        node = self.node
        node.hub.add_session(self)
        node.metrics.connections_total.inc()
        try:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._timers)
                    with trio.CancelScope() as self._tasks_scope:
                        await self._reader()
                    self._nursery = None
                    if self._timers_scope is not None:
                        self._timers_scope.cancel()
                    # Flush what is queued (e.g. the `error` explaining the close), bounded.
                    self.outbox.close(discard=self._aborted or self.close_code == CloseCode.SLOW_CONSUMER)
                    # A slow consumer's queue is dropped, but the write in progress must finish
                    # before its 4009 can follow: give a reader that is merely slow the heartbeat
                    # timeout to take it (a dead one is cut then, as the heartbeat would).
                    wait = FLUSH_TIMEOUT
                    if self.close_code == CloseCode.SLOW_CONSUMER:
                        wait = max(wait, self.node.config.heartbeat_timeout)
                    with trio.move_on_after(wait) as flush:
                        await self._writer_done.wait()
                    if flush.cancelled_caught:
                        self._aborted = True
                    nursery.cancel_scope.cancel()
            except Exception as exc:  # a task of this connection failed: end it, not the server
                log.exception("session %s failed: %s", self.id, exc)
                self._set_close(CloseCode.INTERNAL_ERROR, "internal error")
            self._nursery = None
            if self._aborted:
                await self.transport.abort()
            elif self.transport.close_code is None:
                await self.transport.close(self.close_code or CloseCode.NORMAL, self.close_reason)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        node = self.node
        for sub in self.subscriptions.values():
            node.hub.remove(sub)
        self.subscriptions.clear()
        node.hub.remove_session(self)
        code = self.close_code if self.close_code is not None else (self.transport.close_code or 1006)
        node.metrics.closes.labels(str(code)).inc()
        log.info(
            "connection closed session=%s user=%s remote=%s code=%s reason=%r duration=%.1fs frames_in=%d",
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
        if self._tasks_scope is not None:
            self._tasks_scope.cancel()
        if self._timers_scope is not None:
            self._timers_scope.cancel()

    def abort(self, reason: str) -> None:
        """Ends the connection without a close handshake (the peer is gone)."""
        self._aborted = True
        self.close_soon(1006, reason)

    def slow_consumer(self) -> None:
        """Called from the live path when this connection's outbox is full."""
        if not self.closing:
            self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: outgoing queue full")

    # ------------------------------------------------------------------ tasks

    async def _writer(self) -> None:
        """Writes everything queued in one socket write per wake-up, then notes what was sent."""
        outbox, transport, metrics = self.outbox, self.transport, self.node.metrics
        try:
            while batch := await outbox.take():
                frames = [part for item in batch for part in item[:2]]
                try:
                    await transport.send_frames(frames)
                except ConnectionClosed:
                    outbox.close(discard=True)
                    self.close_soon(1006, "connection lost")
                    return
                for _head, _body, sub, seq in batch:
                    if sub is not None and seq > sub.last_sent_seq:
                        sub.last_sent_seq = seq
                outbox.written()
                metrics.frames_out.inc(len(batch))
                metrics.bytes_out.inc(sum(map(len, frames)))
        finally:
            self._writer_done.set()

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
            self.node.metrics.frames_in.inc()
            if not self._limiter.allow(len(message)):
                # Never dropped silently (CONTRACT §4): the request is answered with its `ref`, so
                # the client knows to send it again; a flood is cut by 4029 after FLOOD_STRIKES.
                await self._error(ErrorCode.RATE_LIMITED, RATE_LIMITED_MESSAGE, frame_ref(message))
                if self._limiter.flooding:
                    self.close_soon(CloseCode.RATE_LIMITED, "rate limited: too many frames")
                    return
                continue
            if isinstance(message, bytes):
                await self._error(ErrorCode.BAD_REQUEST, "binary frames are not accepted: send JSON text frames")
                continue
            frame = decode_client_frame(message)
            if isinstance(frame, DecodeError):
                await self._error(frame.code, frame.message, frame.ref)
                continue
            if self.claims is None and not isinstance(frame, (AuthFrame, PingFrame)):
                await self._error(
                    ErrorCode.UNAUTHENTICATED, f"send `auth` first; `{frame.TYPE}` needs an authenticated connection", frame.id
                )
                continue
            if self._publishing and not isinstance(frame, PublishFrame):
                await self._publishes_answered()  # one connection's frames are answered in order
            await handlers[type(frame)](frame)

    async def _timers(self) -> None:
        """Every deadline of this connection in one task: the auth timeout (4008), heartbeat
        pings and the dead-peer check, `token_expiring` once per token `lead` before its
        `exp`, and close 4002 at `exp` unless a refresh moved it. Wakes early on every auth."""
        with trio.CancelScope() as self._timers_scope:
            if self.closing:
                return
            config, transport = self.node.config, self.transport
            interval, timeout, lead = config.heartbeat_interval, config.heartbeat_timeout, config.token_expiring_lead
            auth_deadline = trio.current_time() + config.auth_timeout
            next_ping = trio.current_time() + interval
            pong: PongWaiter | None = None
            warned: Claims | None = None
            while True:
                claims, changed = self.claims, self._token_changed
                deadlines = [next_ping if pong is None else pong.sent + timeout]
                if claims is None:
                    deadlines.append(auth_deadline)
                else:
                    deadlines.append(self._trio_time(claims.expires))
                    if warned is not claims:
                        deadlines.append(self._trio_time(claims.expires - lead))
                with trio.move_on_at(min(deadlines)):
                    await changed.wait()
                if changed.is_set():
                    continue  # authenticated or refreshed: recompute the deadlines
                now = trio.current_time()
                if claims is None:
                    if now >= auth_deadline:
                        self.close_soon(CloseCode.AUTH_TIMEOUT, "no auth frame within the auth timeout")
                        return
                else:
                    if now >= self._trio_time(claims.expires):
                        await self._error(ErrorCode.TOKEN_EXPIRED, "the token expired without a refresh")
                        self.close_soon(CloseCode.TOKEN_EXPIRED, "token expired")
                        return
                    if warned is not claims and now >= self._trio_time(claims.expires - lead):
                        warned = claims
                        left = claims.expires - self.node.wall_clock()
                        await self._send(
                            TokenExpiringFrame(
                                id=new_id(),
                                timestamp=now_ms(),
                                payload=TokenExpiringPayload(
                                    expires_at=int(claims.expires * 1000), expires_in=max(0, int(left * 1000))
                                ),
                            )
                        )
                if pong is None:
                    if now >= next_ping:
                        pong = PongWaiter(now)
                        with trio.move_on_after(timeout) as scope:
                            try:
                                await transport.send_ping(pong)
                            except ConnectionClosed:
                                self.close_soon(1006, "connection lost")
                                return
                        if scope.cancelled_caught:  # not even a 6-byte ping fits: the peer is gone
                            self.abort("heartbeat: ping could not be sent")
                            return
                elif now >= pong.sent + timeout:
                    if pong.received is not None:
                        self.rtt = pong.received - pong.sent
                    elif self.last_seen < pong.sent:
                        self.abort("heartbeat timeout: no sign of life")
                        return
                    next_ping = pong.sent + interval
                    pong = None

    def _trio_time(self, wall: float) -> float:
        return trio.current_time() + (wall - self.node.wall_clock())

    # ------------------------------------------------------------------ sending

    async def _send(self, frame: Envelope) -> None:
        body = encode(frame)
        await self.outbox.put((text_header(len(body)), body, None, 0))

    async def _unavailable(self, message: str, exc: BaseException, ref: str | None) -> None:
        """A store or backplane failure: the client gets plain words, the log gets the details."""
        log.debug("session %s: %s (%s)", self.id, message, exc)  # the store logs each failure once
        await self._error(ErrorCode.UNAVAILABLE, message, ref)

    async def _error(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        self.node.metrics.errors.labels(code.value).inc()
        await self._send(error_frame(code, message, ref))

    # ------------------------------------------------------------------ handlers

    async def _on_ping(self, frame: PingFrame) -> None:
        await self._send(PongFrame(id=new_id(), timestamp=now_ms(), ref=frame.id))

    async def _on_auth(self, frame: AuthFrame) -> None:
        await self._authenticate(frame.payload.token, ref=frame.id)

    async def _authenticate(self, token: str, ref: str | None) -> None:
        node = self.node
        first = self.claims is None
        try:
            claims = await node.verifier.authenticate(token)
        except AuthError as exc:
            node.metrics.auth_failures.labels(exc.reason).inc()
            await self._error(ErrorCode.AUTH_FAILED, str(exc), ref)
            if first:
                self.close_soon(CloseCode.AUTH_FAILED, "auth failed")
            return
        if first and not self.transport.admit_user(claims.sub):
            await self._error(ErrorCode.LIMIT_EXCEEDED, "too many connections for this user", ref)
            self.close_soon(CloseCode.RATE_LIMITED, "too many connections for this user")
            return
        if not first and claims.sub != self.user_id:
            await self._error(ErrorCode.FORBIDDEN, "a refresh must keep the same `sub`", ref)
            self.close_soon(CloseCode.FORBIDDEN, "sub changed on refresh")
            return
        self.claims = claims
        if first:
            self.user_id = claims.sub
            log.info("connection open session=%s user=%s remote=%s", self.id, claims.sub, self.remote)
        await self._send(
            AuthOkFrame(
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
        )
        changed, self._token_changed = self._token_changed, trio.Event()
        changed.set()
        if not first:
            for channel in [c for c in self.subscriptions if not claims.grants.can_subscribe(c)]:
                self._drop_subscription(channel)
                await self._send(
                    UnsubscribedFrame(
                        id=new_id(),
                        timestamp=now_ms(),
                        channel=channel,
                        payload=UnsubscribedPayload(channel=channel, reason="the refreshed token no longer grants this channel"),
                    )
                )

    async def _on_unsubscribe(self, frame: UnsubscribeFrame) -> None:
        channel = frame.payload.channel
        self._drop_subscription(channel)
        await self._send(
            UnsubscribedFrame(
                id=new_id(), timestamp=now_ms(), ref=frame.id, channel=channel, payload=UnsubscribedPayload(channel=channel)
            )
        )

    def _drop_subscription(self, channel: str) -> None:
        sub = self.subscriptions.pop(channel, None)
        if sub is not None:
            self.node.hub.remove(sub)

    async def _on_publish(self, frame: PublishFrame) -> None:
        """Queues the append at once (in frame order) and lets ``_reply_publishes`` answer when
        it is durable: a client's consecutive publishes share group commits instead of paying
        one fsync each, and every subscriber gets them in one write (bench/results/profile.md)."""
        p = frame.payload
        assert self.claims is not None and self.user_id is not None
        problem = None
        if not self.claims.grants.can_publish(p.channel):
            problem = (ErrorCode.FORBIDDEN, f"the token does not grant publishing to {p.channel!r}")
        elif json_depth_exceeds(p.data, self.node.config.max_json_depth):
            problem = (ErrorCode.BAD_REQUEST, f"data nests deeper than {self.node.config.max_json_depth} levels")
        if problem is not None:
            await self._publishes_answered()  # answers stay in frame order
            await self._error(*problem, frame.id)
            return
        args = (p.channel, p.event, orjson.dumps(p.data))
        kwargs = dict(event_id=new_id(), idem_scope=user_scope(self.user_id), idem_key=frame.id)
        started = trio.current_time()
        try:
            pending = self.node.begin_publish(*args, **kwargs)
        except trio.WouldBlock:  # the store's queue is full: wait our turn like everyone else
            await self._publishes_answered()
            try:
                result = await self.node.publish(*args, **kwargs, source="websocket")
            except StoreUnavailable as exc:
                await self._unavailable(PUBLISH_UNAVAILABLE, exc, frame.id)
                return
            await self._send(self._published(frame.id, result))
            return
        except StoreUnavailable as exc:
            await self._publishes_answered()
            await self._unavailable(PUBLISH_UNAVAILABLE, exc, frame.id)
            return
        if self._publishing is None:
            self._publishing = deque()
        self._publishing.append((frame.id, pending, started))
        if self._publishes_idle is None or self._publishes_idle.is_set():
            # No answerer running (the last one saw the queue empty and ended): start one.
            self._publishes_idle = trio.Event()
            assert self._nursery is not None
            self._nursery.start_soon(self._reply_publishes, self._publishing, self._publishes_idle)
        elif len(self._publishing) >= MAX_PUBLISHES_IN_FLIGHT:
            await self._publishes_answered()

    async def _reply_publishes(self, queue: deque[tuple[str, PendingAppend, float]], idle: trio.Event) -> None:
        """Answers queued publishes in frame order as they become durable; ends when none is left."""
        while queue:
            frame_id, pending, started = queue[0]
            try:
                result = await pending.wait()
            except StoreUnavailable as exc:
                queue.popleft()
                await self._unavailable(PUBLISH_UNAVAILABLE, exc, frame_id)
                continue
            queue.popleft()
            self.node.count_publish(result, started, "websocket")
            await self._send(self._published(frame_id, result))
        # No checkpoint between the last `while queue` check and this: a publish queued from
        # now on sees `idle` set and starts the next answerer; exactly one runs at a time.
        idle.set()

    async def _publishes_answered(self) -> None:
        """Waits until every queued publish has been answered (before answering anything else)."""
        if self._publishing and self._publishes_idle is not None:
            await self._publishes_idle.wait()

    @staticmethod
    def _published(ref: str, result: AppendResult) -> PublishedFrame:
        return PublishedFrame(
            id=new_id(),
            timestamp=now_ms(),
            ref=ref,
            channel=result.channel,
            payload=PublishedPayload(channel=result.channel, seq=result.seq, epoch=result.epoch),
        )

    async def _on_subscribe(self, frame: SubscribeFrame) -> None:
        p = frame.payload
        assert self.claims is not None
        if not self.claims.grants.can_subscribe(p.channel):
            await self._error(ErrorCode.FORBIDDEN, f"the token does not grant channel {p.channel!r}", frame.id)
            return
        if p.channel in self.subscriptions:
            await self._error(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {p.channel!r}", frame.id)
            return
        if len(self.subscriptions) >= self.node.config.max_channels_per_connection:
            await self._error(
                ErrorCode.LIMIT_EXCEEDED,
                f"at most {self.node.config.max_channels_per_connection} channels per connection",
                frame.id,
            )
            return
        sub = Subscription(p.channel, self)
        # Register before reading the store: from here on live events are buffered.
        self.subscriptions[p.channel] = sub
        self.node.hub.add(sub)
        try:
            await self.node.watch_channel(p.channel)
            await self._establish(sub, p.last_seq, p.epoch, frame.id)
        except StoreUnavailable as exc:
            self._drop_subscription(p.channel)
            await self._unavailable(SUBSCRIBE_UNAVAILABLE, exc, frame.id)

    def _owns(self, sub: Subscription) -> bool:
        """``sub`` is still this connection's subscription (not unsubscribed, revoked or closed)."""
        return self.subscriptions.get(sub.channel) is sub and not self.closing

    async def _send_for(self, sub: Subscription, frame: Envelope) -> bool:
        """Queues a frame of ``sub``'s channel unless the subscription ended while we waited for
        room: nothing of a channel is ever queued after its `unsubscribed`. False: ended."""
        await self.outbox.room()
        if not self._owns(sub):
            return False
        body = encode(frame)
        self.outbox.push((text_header(len(body)), body, None, 0))
        return True

    async def _establish(self, sub: Subscription, last_seq: int | None, client_epoch: str | None, ref: str | None) -> None:
        """Plans the recovery, sends `subscribed` (+ `snapshot`), replays, and turns LIVE."""
        node = self.node
        for _ in range(MAX_REPLANS):
            plan = await node.plan_subscription(sub.channel, last_seq, client_epoch)
            if not self._owns(sub):
                return  # unsubscribed or closed meanwhile
            sub.epoch = plan.epoch
            sub.last_seq = plan.start_seq
            sub.last_sent_seq = plan.start_seq
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
            if not await self._send_for(sub, subscribed):
                return
            if plan.snapshot is not None:
                snapshot = SnapshotFrame(
                    id=new_id(),
                    timestamp=plan.snapshot.timestamp,
                    channel=sub.channel,
                    epoch=plan.epoch,
                    payload=SnapshotPayload(state=orjson.loads(plan.snapshot.state_json), seq=plan.snapshot.seq),
                )
                if not await self._send_for(sub, snapshot):
                    return
            try:
                await self._catch_up(sub, plan.head_seq)
                return
            except _LostPosition:
                last_seq, client_epoch, ref = sub.last_seq, sub.epoch, None
                sub.state = SubState.RECOVERING
        self.close_soon(CloseCode.TRY_AGAIN_LATER, "channel position kept moving; resubscribe")

    async def _catch_up(self, sub: Subscription, head: int) -> None:
        """Streams stored events after ``sub.last_seq`` through the outbox up to ``head`` (the
        head seq the plan saw), then merges the live events buffered meanwhile and switches to
        LIVE. Never delivers a gap: a seq that does not follow the last one, or a read that
        comes back empty below ``head``, raises _LostPosition (the caller re-plans).

        Each page is read and written while holding one of the node's catch-up slots, and the
        slot is given back only once the page left the outbox: a node-wide bound on replayed
        bytes in memory (slots × REPLAY_PAGE_BYTES), however many subscriptions catch up at once
        (a pub/sub reconnect repairs every subscription). A client that cannot take a page
        within CATCH_UP_STALL is a slow consumer (4009)."""
        node = self.node
        store, metrics, outbox = node.store, node.metrics, self.outbox
        reread = False  # past the planned head: read until the store has nothing more
        while True:
            if sub.last_seq < head or reread:
                async with node.catch_up_slots:
                    events = await store.read_after(sub.channel, sub.last_seq, REPLAY_PAGE, REPLAY_PAGE_BYTES)
                    if not self._owns(sub):
                        return
                    if not events and sub.last_seq < head:
                        raise _LostPosition  # events the plan counted on are gone
                    for ev in events:
                        if ev.seq != sub.last_seq + 1 or ev.epoch != sub.epoch:
                            raise _LostPosition  # a hole or a new epoch: never deliver a gap
                        await outbox.room()
                        if not self._owns(sub):
                            return  # e.g. revoked by a token refresh: nothing more of it
                        outbox.push((ev.head, ev.frame, sub, ev.seq))
                        sub.last_seq = ev.seq
                    metrics.replayed.inc(len(events))
                    if events:
                        with trio.move_on_after(CATCH_UP_STALL) as stall:
                            await outbox.flushed()
                        if stall.cancelled_caught:
                            self.slow_consumer()
                            return
                if not self._owns(sub):
                    return
                if events:
                    continue
            reread = False
            # No checkpoint from here to the switch: Trio cannot run another task in between,
            # so no live event can slip past the merge (centrifuge's buffer lock, for free).
            if sub.overflowed:
                sub.overflowed = False
                sub.buffer, sub.buffer_bytes = [], 0
                reread = True
                continue
            if any(ev.epoch != sub.epoch for ev in sub.buffer):
                raise _LostPosition
            pending = merge_buffer(sub.buffer, sub.last_seq)
            if pending is None:
                reread = True  # a gap between the store read and the buffer: read the store again
                continue
            for ev in pending:
                if not outbox.offer((ev.head, ev.frame, sub, ev.seq)):
                    self.slow_consumer()
                    return
                sub.last_seq = ev.seq
            sub.buffer, sub.buffer_bytes = [], 0
            sub.state = SubState.LIVE
            return

    def request_repair(self, sub: Subscription) -> None:
        """Live path found a gap or a new epoch: catch up from the store in a task of ours."""
        if sub.repairing or self._nursery is None or self.closing:
            return
        sub.repairing = True
        self._nursery.start_soon(self._repair, sub)

    async def _repair(self, sub: Subscription) -> None:
        try:
            try:
                pos = await self.node.store.position(sub.channel)
                if pos.epoch != sub.epoch:
                    raise _LostPosition  # the log was lost or reset under a live subscription
                await self._catch_up(sub, pos.head_seq)
            except _LostPosition:
                if self._owns(sub):
                    await self._establish(sub, sub.last_seq, sub.epoch, None)
        except StoreUnavailable as exc:
            log.warning("session %s: catch-up of %s failed, closing 1011: %s", self.id, sub.channel, exc)
            self.close_soon(CloseCode.INTERNAL_ERROR, "storage unavailable")
        finally:
            sub.repairing = False

    # ------------------------------------------------------------------ stats

    def token_expires_in(self) -> float | None:
        if self.claims is None:
            return None
        return max(0.0, self.claims.expires - self.node.wall_clock())

