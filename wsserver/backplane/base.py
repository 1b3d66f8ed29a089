"""The backplane contract (how events appended on any node reach this node's hub) and the
embedded node's LocalBackplane, for which the store's commit announcement is the whole story.

Contract:
* ``watch(channel)`` is called each time a local subscription to ``channel`` is registered in
  the hub, BEFORE the store is read for its recovery; it returns once this node is sure to
  receive every event of ``channel`` appended from then on (e.g. Redis confirmed SUBSCRIBE).
  It is idempotent and may be called concurrently for one channel.
* ``unwatch(channel)`` (synchronous) is called when the hub's last local subscription to the
  channel went away; the backplane may stop receiving it.
* Events it receives are handed to the hub's ``dispatch`` (each subscription drops, buffers or
  detects a gap), in the order the backplane received them.
* Loss (pub/sub is at-most-once) is repaired by subscriptions: a seq gap on the live path makes
  the subscription catch up from the store. Loss the live path cannot see (a reconnect, the last
  events of a burst) is the backplane's to notice: ``Hub.catch_up(channel, cause)`` or
  ``Subscription.begin_catch_up(seen, cause)`` make subscriptions catch up the same way.
* ``healthy`` is false while events published elsewhere may not reach this node (``/healthz``).
"""

from __future__ import annotations

from typing import Protocol

import trio
from attrs import frozen


@frozen
class BackplaneStatistics:
    kind: str
    healthy: bool
    channels: int
    detail: str = ""


class Backplane(Protocol):
    async def run(self, *, task_status=...) -> None:
        """Connects and runs until cancelled; supports ``nursery.start``."""

    async def watch(self, channel: str) -> None: ...

    def unwatch(self, channel: str) -> None: ...

    @property
    def healthy(self) -> bool: ...

    def statistics(self) -> BackplaneStatistics: ...


class LocalBackplane:
    """One node on the embedded store: every append is announced in-process by the store
    (``on_commit`` → ``hub.dispatch``), so there is nothing to connect to."""

    def __init__(self) -> None:
        self._watched: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def watch(self, channel: str) -> None:
        self._watched.add(channel)
        await trio.lowlevel.checkpoint()

    def unwatch(self, channel: str) -> None:
        self._watched.discard(channel)

    @property
    def healthy(self) -> bool:
        return True

    def statistics(self) -> BackplaneStatistics:
        return BackplaneStatistics(kind="embedded", healthy=True, channels=len(self._watched))
