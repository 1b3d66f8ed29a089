"""The node-local registry: live sessions by id and user, and channel → subscriptions, with the
synchronous fan-out that hands each event (already encoded) to every local subscription, and the
backplane's way to make subscriptions re-check the store after a loss."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import trio

from wsserver.subscription import SubState

if TYPE_CHECKING:
    from wsserver.session import Session
    from wsserver.store.base import StoredEvent
    from wsserver.subscription import Subscription


class Hub:
    """Only touched from the Trio thread; no locks needed, no awaits inside."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self._channels: dict[str, dict[str, Subscription]] = {}
        #: newest seq seen per channel with local subscribers (for lag figures)
        self.heads: dict[str, int] = {}
        self.delivered = 0
        self._empty = trio.Event()
        #: called (synchronously) when a channel's last local subscription is removed
        self.on_channel_idle: Callable[[str], None] = lambda channel: None

    # sessions
    def add_session(self, session: Session) -> None:
        self.sessions[session.id] = session

    def remove_session(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        if not self.sessions:
            self._empty.set()

    async def wait_empty(self) -> None:
        """Returns once no session is left (used by the drain)."""
        while self.sessions:
            self._empty = trio.Event()
            await self._empty.wait()

    def sessions_of_user(self, user_id: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.user_id == user_id]

    # subscriptions
    def add(self, sub: Subscription) -> None:
        self._channels.setdefault(sub.channel, {})[sub.session.id] = sub

    def remove(self, sub: Subscription) -> None:
        subs = self._channels.get(sub.channel)
        if subs is not None and subs.get(sub.session.id) is sub:
            del subs[sub.session.id]
            if not subs:
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

    def resync(self, channel: str) -> int:
        """The backplane may have lost events of ``channel`` (pub/sub reconnect): every LIVE local
        subscription catches up from the store. Returns how many were asked."""
        return sum(self.recheck(sub) for sub in self.subscriptions(channel))

    def recheck(self, sub: Subscription, seen: StoredEvent | None = None) -> bool:
        """Makes a LIVE subscription catch up from the store, exactly as a seq gap on the live path
        does (RECOVERING buffers live events meanwhile); ``seen`` is an event the backplane missed,
        e.g. of a new epoch. False when the subscription is already recovering."""
        if sub.state is not SubState.LIVE:
            return False
        sub.state = SubState.RECOVERING
        sub.buffer = [] if seen is None else [seen]
        sub.buffer_bytes = 0 if seen is None else len(seen.frame)
        sub.session.request_repair(sub)
        return True

    def broadcast(self, ev: StoredEvent) -> None:
        """Hot path: hands ``ev`` to every local subscription of its channel, without awaiting."""
        subs = self._channels.get(ev.channel)
        if not subs:
            return
        if ev.seq > self.heads.get(ev.channel, 0):
            self.heads[ev.channel] = ev.seq
        for sub in tuple(subs.values()):
            sub.deliver(ev)
        self.delivered += len(subs)
