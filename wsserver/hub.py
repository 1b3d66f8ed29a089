"""The node-local registry: open connections by id, and channel → subscriptions, with the
synchronous dispatch that hands each event (already encoded) to every local subscription. It
only registers and dispatches; every decision about an event is the subscription's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from wsserver.store.base import StoredEvent
    from wsserver.subscription import Subscription


class Connected(Protocol):
    """A connection as the registry needs it (``wsserver.connection.Connection``)."""

    id: str
    user_id: str | None

    def close_soon(self, code: int, reason: str) -> None: ...


class Hub:
    """Only touched from the Trio thread; no locks needed, no awaits inside."""

    def __init__(self) -> None:
        self.connections: dict[str, Connected] = {}
        self._channels: dict[str, dict[int, Subscription]] = {}
        #: newest seq seen per channel with local subscribers (lag figures)
        self.heads: dict[str, int] = {}
        self.delivered = 0
        self._empty = trio.Event()
        #: called (synchronously) when a channel's last local subscription is removed
        self.on_channel_idle: Callable[[str], None] = lambda channel: None

    # connections
    def add_connection(self, connection: Connected) -> None:
        self.connections[connection.id] = connection

    def remove_connection(self, connection: Connected) -> None:
        self.connections.pop(connection.id, None)
        if not self.connections:
            self._empty.set()

    async def wait_empty(self) -> None:
        """Returns once no connection is left (used by the drain)."""
        while self.connections:
            self._empty = trio.Event()
            await self._empty.wait()

    def connections_of_user(self, user_id: str) -> list[Connected]:
        return [c for c in self.connections.values() if c.user_id == user_id]

    # subscriptions
    def add(self, sub: Subscription) -> None:
        self._channels.setdefault(sub.channel, {})[id(sub)] = sub

    def remove(self, sub: Subscription) -> None:
        subs = self._channels.get(sub.channel)
        if subs is not None and subs.pop(id(sub), None) is not None and not subs:
            del self._channels[sub.channel]
            self.heads.pop(sub.channel, None)
            self.on_channel_idle(sub.channel)

    def subscriber_count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def channels(self) -> Iterator[tuple[str, int]]:
        for channel, subs in self._channels.items():
            yield channel, len(subs)

    def subscriptions(self, channel: str) -> tuple[Subscription, ...]:
        return tuple(self._channels.get(channel, {}).values())

    def note_head(self, channel: str, seq: int) -> None:
        """A channel's head as read from the store (a subscribe's plan), for lag figures."""
        if channel in self._channels and seq > self.heads.get(channel, 0):
            self.heads[channel] = seq

    # dispatch
    def dispatch(self, ev: StoredEvent) -> None:
        """Hot path: hands ``ev`` to every local subscription of its channel, without awaiting.
        (A copy of the subscriptions: a delivery may end one synchronously, e.g. a slow consumer.)"""
        subs = self._channels.get(ev.channel)
        if not subs:
            return
        if ev.seq > self.heads.get(ev.channel, 0):
            self.heads[ev.channel] = ev.seq
        for sub in tuple(subs.values()):
            sub.deliver(ev)
        self.delivered += len(subs)

    def dispatch_many(self, events: list[StoredEvent]) -> None:
        """A commit's events, in seq order per channel: each subscription gets its channel's run
        at once (a connection that is idle writes them with one vectored write, not one each)."""
        if len(events) == 1:
            self.dispatch(events[0])
            return
        runs: dict[str, list[StoredEvent]] = {}
        for ev in events:
            runs.setdefault(ev.channel, []).append(ev)
        for channel, run in runs.items():
            subs = self._channels.get(channel)
            if not subs:
                continue
            if run[-1].seq > self.heads.get(channel, 0):
                self.heads[channel] = run[-1].seq
            for sub in tuple(subs.values()):
                sub.deliver_run(run)
            self.delivered += len(subs) * len(run)

    def catch_up(self, channel: str, cause: str) -> int:
        """The backplane may have lost events of ``channel`` (``cause``: a pub/sub reconnect): every
        LIVE local subscription catches up from the store. Returns how many began."""
        return sum(sub.begin_catch_up(None, cause) for sub in self.subscriptions(channel))
