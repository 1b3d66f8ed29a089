"""The client: a supervisor loop that connects, authenticates, resubscribes from each channel's
position and resends unacknowledged publishes after every drop, and the per-connection state
machine (auth → live) with dead-link detection and in-band token refresh.
"""

from __future__ import annotations

import inspect
import logging
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
import trio
from attrs import define, frozen
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from wsclient.backoff import Backoff
from wsclient.codes import ABNORMAL, AUTH_FAILED, Reconnect, advice_for
from wsclient.cursor import ChannelCursor, Verdict
from wsclient.errors import ClientClosed, MessageTooBig, PublishRefused
from wsclient.events import (
    ChannelEvent,
    ClientEvent,
    Closed,
    Connected,
    Connecting,
    ConnectionState,
    Live,
    Reconnecting,
    Reset,
    ServerError,
    Snapshot,
    Subscribed,
    TokenReason,
    Unsubscribed,
)
from wsclient.link import WatchedStream, WsUrl, open_link
from wsclient.outbox import Outbox, Pending, PublishResult
from wsclient.positions import MemoryPositionStore, Position, PositionStore

#: Seconds for TCP connect + WebSocket handshake + `auth_ok`.
CONNECT_TIMEOUT: Final = 10.0
#: Seconds of silence tolerated beyond ``heartbeatInterval`` before the link is declared dead.
HEARTBEAT_SLACK: Final = 3.0
#: Seconds the closing handshake may take when the app closes the client.
CLOSE_TIMEOUT: Final = 2.0
#: Seconds before a publish or subscribe refused with a retryable error is sent again.
RETRY_DELAY: Final = 1.0
#: Largest incoming frame accepted (bytes); the server's own limit is usually far lower.
MAX_INCOMING_MESSAGE: Final = 1 << 20

log = logging.getLogger("wsclient")

#: ``async def provider(reason) -> token`` (a plain function works too); None means "no token: stop".
TokenProvider = Callable[[TokenReason], Awaitable[str | None] | str | None]


@define
class ClientStats:
    """Counters for monitoring and tests (read-only for the app)."""

    connects: int = 0
    reconnects: int = 0
    delivered: int = 0
    duplicates_dropped: int = 0
    gaps: int = 0
    publishes_resent: int = 0


@frozen
class _End:
    code: int
    reason: str
    authenticated: bool


def _frame(frame_type: str, payload: dict[str, Any], frame_id: str | None = None) -> dict[str, Any]:
    return {
        "type": frame_type,
        "id": frame_id or str(uuid.uuid4()),
        "timestamp": time.time_ns() // 1_000_000,
        "payload": payload,
    }


class Client:
    """A reconnecting client for one server URL.

    Run it with ``await nursery.start(client.run)`` (or use :func:`open_client`), subscribe,
    publish, and read every :mod:`wsclient.events` object from ``client.events``. The events
    channel is unbuffered: the client waits for the app to take each event, and a channel
    position is saved only once the app took the event. The app must keep reading ``events``.

    Args:
        url: ``ws://host:port/ws`` or ``wss://…``.
        token_provider: called with a :class:`TokenReason` whenever a token is needed.
        positions: where channel positions live (default: in memory).
        backoff: reconnect delays (default 0.5 s doubling to 20 s, full jitter).
        heartbeat_slack: seconds of silence beyond the server's ``heartbeatInterval`` before the
            link counts as dead (an app-level `ping` goes out once the interval has passed).
        connect_timeout: seconds for TCP, handshake and `auth_ok`.
        ssl_context: for ``wss://`` URLs (default: the system's trust store).
        seed: seeds the jitter (for reproducible tests).
    """

    def __init__(
        self,
        url: str,
        token_provider: TokenProvider,
        *,
        positions: PositionStore | None = None,
        backoff: Backoff = Backoff(),
        heartbeat_slack: float = HEARTBEAT_SLACK,
        connect_timeout: float = CONNECT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        seed: int | None = None,
    ) -> None:
        self.url = WsUrl.parse(url)
        self._token_provider = token_provider
        self.positions: PositionStore = positions if positions is not None else MemoryPositionStore()
        self._backoff = backoff
        self._slack = heartbeat_slack
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._rng = random.Random(seed)
        self._cursors: dict[str, ChannelCursor] = {}
        self._outbox = Outbox()
        self._send_events, self.events = trio.open_memory_channel[ClientEvent](0)
        self._state = ConnectionState.CONNECTING
        self._conn: _Connection | None = None
        self._generation = 0
        self._max_message_size: int | None = None
        self._emitting = 0
        self._stop = trio.Event()
        self._done = trio.Event()
        self._run_scope: trio.CancelScope | None = None
        self.stats = ClientStats()

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> ConnectionState:
        return self._state

    def position(self, channel: str) -> Position | None:
        """The position of ``channel`` the app has received up to."""
        cursor = self._cursors.get(channel)
        return cursor.position if cursor else self.positions.load(channel)

    async def subscribe(self, channel: str, *, last_seq: int | None = None, epoch: str | None = None) -> None:
        """Subscribes now or at the next connection, and after every reconnect.

        Resumes from the position store's entry for ``channel`` if it has one, else from
        ``last_seq``/``epoch`` (``last_seq=0``: from the start of the retained history; None:
        live events only)."""
        if channel in self._cursors:
            return
        stored = self.positions.load(channel)
        start = stored or (Position(last_seq, epoch) if last_seq is not None else None)
        cursor = ChannelCursor(channel, start)
        self._cursors[channel] = cursor
        conn = self._conn
        if conn is not None and conn.authenticated:
            await conn.subscribe(cursor)

    async def unsubscribe(self, channel: str) -> None:
        """Stops the channel's subscription and forgets its position."""
        if self._cursors.pop(channel, None) is None:
            return
        self.positions.forget(channel)
        conn = self._conn
        if conn is not None and conn.authenticated and channel in conn.subscribed:
            conn.forget(channel)
            await conn.send(_frame("unsubscribe", {"channel": channel}))

    async def publish(self, channel: str, event: str, data: dict[str, Any]) -> PublishResult:
        """Publishes through the outbox and waits for the server's acknowledgement.

        A publish interrupted by a drop is resent with the same frame id after the reconnect,
        so it is stored exactly once. Raises :class:`MessageTooBig` (never sent),
        :class:`PublishRefused` (the server said no for good) or :class:`ClientClosed`."""
        if self._done.is_set() or self._stop.is_set():
            raise ClientClosed("the client is closed")
        frame = _frame("publish", {"channel": channel, "event": event, "data": data})
        wire = orjson.dumps(frame).decode()
        if self._max_message_size is not None and len(wire.encode()) > self._max_message_size:
            raise MessageTooBig(f"publish frame of {len(wire.encode())} bytes > maxMessageSize {self._max_message_size}")
        entry = self._outbox.add(frame["id"], wire)
        conn = self._conn
        if conn is not None and conn.authenticated:
            await conn.send_publish(entry)
        return await entry.wait()

    async def close(self) -> None:
        """Closes the connection (code 1000) and ends ``run``; pending publishes raise ClientClosed."""
        self._stop.set()
        if self._conn is None and self._run_scope is not None:
            self._run_scope.cancel()
        await self._done.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connects and keeps the client connected until closed or told to stop by the server.
        Supports ``nursery.start``; returns after emitting :class:`Closed`."""
        closed = Closed(1000, "closed by the application")
        told = False
        try:
            with trio.CancelScope() as self._run_scope:
                task_status.started()
                closed = await self._supervise()
                self._state = ConnectionState.CLOSED
                self._outbox.fail_all(ClientClosed(f"client closed: {closed.code} {closed.reason}"))
                if not self._stop.is_set():  # the server or the SDK ended it: the app must hear why
                    await self._emit(closed)
                    told = True
        finally:
            self._state = ConnectionState.CLOSED
            self._outbox.fail_all(ClientClosed(f"client closed: {closed.code} {closed.reason}"))
            if not told:  # the app asked to close and may no longer read: offer, never wait
                try:
                    self._send_events.send_nowait(closed)
                except (trio.WouldBlock, trio.BrokenResourceError):
                    log.debug("closed event not taken by the app: %s", closed)
            self._send_events.close()
            self._done.set()

    # ------------------------------------------------------------------ supervision

    async def _supervise(self) -> Closed:
        attempt = 0
        reason = TokenReason.CONNECT
        rejected: str | None = None
        lost_at = trio.current_time()
        while not self._stop.is_set():
            self._state = ConnectionState.CONNECTING
            await self._emit(Connecting(attempt))
            started = trio.current_time()
            token = await self.token(reason)
            if token is None:
                return Closed(AUTH_FAILED, "the token provider has no token")
            if rejected is not None and token == rejected:
                return Closed(AUTH_FAILED, "the token provider returned the token the server rejected")
            end = await self._connect_once(token, started, lost_at)
            lost_at = trio.current_time()
            if self._stop.is_set():
                break
            advice = advice_for(end.code)
            if advice is Reconnect.NEVER:
                return Closed(end.code, end.reason)
            if end.authenticated:
                attempt = 0
            rejected = token if end.code == AUTH_FAILED else None
            reason = TokenReason.REJECTED if advice is Reconnect.NEW_TOKEN else TokenReason.CONNECT
            if advice in (Reconnect.AT_ONCE, Reconnect.NEW_TOKEN) and attempt == 0:
                delay = 0.0
            else:
                delay = self._backoff.delay(attempt, self._rng)
            attempt += 1
            self.stats.reconnects += 1
            self._state = ConnectionState.RECONNECTING
            log.info("reconnecting in %.2fs after %s %s (attempt %d, %s)", delay, end.code, end.reason, attempt, advice)
            await self._emit(Reconnecting(attempt, delay, end.code, end.reason, advice))
            await trio.sleep(delay)
        return Closed(1000, "closed by the application")

    async def token(self, reason: TokenReason) -> str | None:
        """Asks the application's token provider (sync or async) for a token."""
        result = self._token_provider(reason)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _connect_once(self, token: str, started: float, lost_at: float) -> _End:
        self._generation += 1
        stream: WatchedStream | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    with trio.fail_after(self._connect_timeout):
                        ws, stream = await open_link(
                            nursery, self.url, ssl_context=self._ssl_context, max_message_size=MAX_INCOMING_MESSAGE
                        )
                except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError, trio.BrokenResourceError) as exc:
                    nursery.cancel_scope.cancel()
                    return _End(ABNORMAL, f"cannot connect: {exc!r}", False)
                self.stats.connects += 1
                conn = _Connection(self, ws, stream, self._generation, started, lost_at)
                self._conn = conn
                try:
                    return await conn.run(token)
                finally:
                    self._conn = None
                    nursery.cancel_scope.cancel()
        finally:
            if stream is not None:
                await trio.aclose_forcefully(stream)

    async def _emit(self, event: ClientEvent) -> None:
        """Hands one event to the app and waits until it took it."""
        self._emitting += 1
        try:
            await self._send_events.send(event)
        except trio.BrokenResourceError:
            log.debug("the app closed `events`; dropping %s", event)
        finally:
            self._emitting -= 1
            if self._conn is not None:
                self._conn.stream.touch()


class _Connection:
    """One link's protocol state. ``run`` returns how it ended; its tasks (reader, watchdog,
    stop watcher, token refresh) all live in its nursery and die with it, so nothing started
    for this link (a token refresh in particular) can act on the next one."""

    def __init__(
        self, client: Client, ws: WebSocketConnection, stream: WatchedStream, generation: int, started: float,
        lost_at: float,
    ) -> None:
        self.client = client
        self.ws = ws
        self.stream = stream
        self.generation = generation
        self.started = started
        self.lost_at = lost_at
        self.authenticated = False
        self.heartbeat = 0.0
        self.auth_id = ""
        self.subscribed: set[str] = set()  # channels a `subscribe` went out for on this link
        self.recovering: dict[str, int | None] = {}  # channel → replay events still due (None: awaiting `subscribed`)
        self.sub_refs: dict[str, str] = {}  # subscribe frame id → channel
        self.resubscribed = False
        self.live_reported = False
        self.refreshing = False
        self.end: _End | None = None
        self._authed = trio.Event()
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "auth_ok": self._on_auth_ok,
            "token_expiring": self._on_token_expiring,
            "subscribed": self._on_subscribed,
            "snapshot": self._on_snapshot,
            "unsubscribed": self._on_unsubscribed,
            "published": self._on_published,
            "error": self._on_error,
            "pong": self._on_pong,
        }

    async def run(self, token: str) -> _End:
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reader, token)
                nursery.start_soon(self._watchdog)
                nursery.start_soon(self._watch_stop)
        return self.end or _End(ABNORMAL, "connection ended", self.authenticated)

    def finish(self, code: int, reason: str) -> None:
        if self.end is None:
            self.end = _End(code, reason, self.authenticated)
        self._scope.cancel()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_wire(orjson.dumps(frame).decode())

    async def send_wire(self, wire: str) -> None:
        """Sends one frame; a closed link is left for the reader to report."""
        try:
            await self.ws.send_message(wire)
        except ConnectionClosed:
            log.debug("send on a closed link dropped (the outbox or the resubscribe covers it)")

    # ------------------------------------------------------------------ tasks

    async def _reader(self, token: str) -> None:
        auth = _frame("auth", {"token": token})
        self.auth_id = auth["id"]
        await self.send(auth)
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed as exc:
                why = exc.reason
                if why is None:
                    self.finish(ABNORMAL, "link lost")
                else:
                    self.finish(int(why.code), why.reason or why.name)
                return
            if isinstance(message, bytes):
                continue
            try:
                frame = orjson.loads(message)
                frame_type = frame["type"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                await self.client._emit(ServerError("bad_frame", f"undecodable server frame: {exc}", None))
                continue
            if "." in frame_type:
                await self._on_event(frame)
            else:
                handler = self._handlers.get(frame_type)
                if handler is not None:
                    await handler(frame)

    async def _watchdog(self) -> None:
        """Before `auth_ok`: the connect timeout. Then: a `ping` frame once nothing has arrived
        for ``heartbeatInterval``, and the link is dead after ``heartbeatInterval + slack``."""
        client = self.client
        with trio.move_on_after(client._connect_timeout):
            await self._authed.wait()
        if not self._authed.is_set():
            self.finish(ABNORMAL, f"no auth_ok within {client._connect_timeout:.1f}s")
            return
        interval, slack = self.heartbeat, client._slack
        tick = max(0.02, min(0.5, interval / 4))
        pinged_at = None
        while True:
            await trio.sleep(tick)
            if client._emitting:
                self.stream.touch()  # the app holds us up, not the network
            now, last = trio.current_time(), self.stream.last_received
            if now - last > interval + slack:
                self.finish(ABNORMAL, f"dead link: nothing received for {now - last:.1f}s")
                return
            if now - last > interval and (pinged_at is None or pinged_at < last):
                pinged_at = now
                assert self._nursery is not None
                self._nursery.start_soon(self.send, _frame("ping", {}))

    async def _watch_stop(self) -> None:
        await self.client._stop.wait()
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self.ws.aclose(1000, "client closing")
        self.finish(1000, "closed by the application")

    async def _refresh(self) -> None:
        """In-band token refresh for THIS link only (cancelled with it)."""
        try:
            token = await self.client.token(TokenReason.EXPIRING)
            if token is not None and self.end is None and self.client._conn is self:
                await self.send(_frame("auth", {"token": token}))
        finally:
            self.refreshing = False

    # ------------------------------------------------------------------ subscriptions and outbox

    async def subscribe(self, cursor: ChannelCursor) -> None:
        if cursor.channel in self.subscribed:
            return
        self.subscribed.add(cursor.channel)
        self.recovering[cursor.channel] = None
        frame = _frame("subscribe", cursor.subscribe_payload())
        self.sub_refs[frame["id"]] = cursor.channel
        await self.send(frame)

    def forget(self, channel: str) -> None:
        self.subscribed.discard(channel)
        self.recovering.pop(channel, None)

    async def send_publish(self, entry: Pending) -> None:
        if entry.sent_on == self.generation:
            return
        limit = self.client._max_message_size
        if limit is not None and len(entry.wire.encode()) > limit:
            self.client._outbox.fail(entry.frame_id, MessageTooBig(f"publish frame > maxMessageSize {limit}"))
            return
        if entry.sent_on is not None:
            self.client.stats.publishes_resent += 1
        entry.sent_on = self.generation
        await self.send_wire(entry.wire)

    async def _retry_later(self, coro_fn: Callable[[], Awaitable[None]]) -> None:
        await trio.sleep(RETRY_DELAY)
        await coro_fn()

    async def _check_live(self) -> None:
        if self.resubscribed and not self.recovering and not self.live_reported:
            self.live_reported = True
            now = trio.current_time()
            await self.client._emit(Live(now - self.started, now - self.lost_at))

    # ------------------------------------------------------------------ frame handlers

    async def _on_auth_ok(self, frame: dict[str, Any]) -> None:
        p = frame["payload"]
        client = self.client
        client._max_message_size = p["maxMessageSize"]
        if self.authenticated:
            return  # a refresh was accepted
        self.authenticated = True
        self.heartbeat = p["heartbeatInterval"] / 1000
        self._authed.set()
        client._state = ConnectionState.CONNECTED
        await client._emit(Connected(p["sessionId"], p["userId"], self.heartbeat))
        for channel, cursor in list(client._cursors.items()):
            if client._cursors.get(channel) is cursor:
                await self.subscribe(cursor)
        for entry in client._outbox.unsent(self.generation):
            await self.send_publish(entry)
        self.resubscribed = True
        await self._check_live()

    async def _on_token_expiring(self, frame: dict[str, Any]) -> None:
        if not self.refreshing and self._nursery is not None:
            self.refreshing = True
            self._nursery.start_soon(self._refresh)

    async def _on_subscribed(self, frame: dict[str, Any]) -> None:
        p = frame["payload"]
        channel, mode = p["channel"], p["recovery"]
        cursor = self.client._cursors.get(channel)
        if cursor is None:
            return
        self.sub_refs.pop(frame.get("ref") or "", None)
        self.subscribed.add(channel)
        await self.client._emit(Subscribed(channel, mode, p["epoch"], p["headSeq"], p["replayCount"]))
        if mode == "reset":
            await self.client._emit(Reset(channel, p["epoch"], p["headSeq"]))
        cursor.on_subscribed(mode, p["epoch"], p["headSeq"])
        if mode in ("reset", "none") and cursor.position is not None:
            self.client.positions.save(channel, cursor.position)
        if p["replayCount"] > 0:
            self.recovering[channel] = p["replayCount"]
        else:
            self.recovering.pop(channel, None)
        await self._check_live()

    async def _on_snapshot(self, frame: dict[str, Any]) -> None:
        channel, p = frame["channel"], frame["payload"]
        cursor = self.client._cursors.get(channel)
        if cursor is None:
            return
        await self.client._emit(Snapshot(channel, frame["epoch"], p["seq"], p["state"]))
        cursor.on_snapshot(p["seq"], frame["epoch"])
        self.client.positions.save(channel, Position(p["seq"], frame["epoch"]))

    async def _on_event(self, frame: dict[str, Any]) -> None:
        client = self.client
        channel = frame.get("channel")
        cursor = client._cursors.get(channel) if isinstance(channel, str) else None
        if cursor is None:
            return
        seq, epoch, event_id = frame["seq"], frame["epoch"], frame["id"]
        verdict = cursor.check(seq, epoch, event_id)
        if verdict is Verdict.DELIVER:
            await client._emit(
                ChannelEvent(channel, seq, epoch, event_id, frame["type"], frame.get("payload") or {}, frame.get("timestamp", 0))
            )
            cursor.commit(seq, event_id)  # only once the app took it: a drop mid-handover replays it
            client.positions.save(channel, Position(seq, epoch))
            client.stats.delivered += 1
        elif verdict is Verdict.DUPLICATE:
            client.stats.duplicates_dropped += 1
        else:
            client.stats.gaps += 1
            self.finish(ABNORMAL, f"sequence gap on {channel} (have {cursor.seq}, got {seq}): resyncing")
            return
        remaining = self.recovering.get(channel)
        if remaining is not None:
            if remaining <= 1:
                del self.recovering[channel]
                await self._check_live()
            else:
                self.recovering[channel] = remaining - 1

    async def _on_unsubscribed(self, frame: dict[str, Any]) -> None:
        channel = frame["payload"]["channel"]
        self.forget(channel)
        if frame.get("ref"):
            return  # the app asked; it already forgot the channel
        if self.client._cursors.pop(channel, None) is not None:
            self.client.positions.forget(channel)
        await self.client._emit(Unsubscribed(channel, frame["payload"].get("reason")))
        await self._check_live()

    async def _on_published(self, frame: dict[str, Any]) -> None:
        self.client._outbox.resolve(frame.get("ref") or "", frame["payload"])

    async def _on_pong(self, frame: dict[str, Any]) -> None:
        return  # any arriving byte already counted as a sign of life

    async def _on_error(self, frame: dict[str, Any]) -> None:
        client, p = self.client, frame["payload"]
        ref = frame.get("ref") or ""
        code, message, retryable = p["code"], p["message"], p.get("retryable", False)
        assert self._nursery is not None
        entry = client._outbox.get(ref)
        if entry is not None:
            if retryable:
                entry.sent_on = None
                self._nursery.start_soon(self._retry_later, lambda: self.send_publish(entry))
            else:
                client._outbox.fail(ref, PublishRefused(code, message))
            return
        channel = self.sub_refs.pop(ref, None)
        if channel is not None:
            if code == "already_subscribed":
                return
            self.forget(channel)
            cursor = client._cursors.get(channel)
            if retryable and cursor is not None:
                self._nursery.start_soon(self._retry_later, lambda: self.subscribe(cursor))
            else:
                client._cursors.pop(channel, None)
                client.positions.forget(channel)
                await self._check_live()
        await client._emit(ServerError(code, message, channel))


@asynccontextmanager
async def open_client(url: str, token_provider: TokenProvider, **options: Any) -> AsyncIterator[Client]:
    """Runs a :class:`Client` for the duration of the ``async with`` block, then closes it (1000)."""
    client = Client(url, token_provider, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        try:
            yield client
        finally:
            await client.close()
