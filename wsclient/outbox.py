"""Client publishes not yet acknowledged: each keeps its frame id, so a resend after a
reconnect is the same frame and the server stores it exactly once."""

from __future__ import annotations

from typing import Any

import trio
from attrs import frozen

from wsclient.errors import ClientError


@frozen
class PublishResult:
    """The server's acknowledgement: where the event landed."""

    id: str
    channel: str
    seq: int
    epoch: str


class Pending:
    """One publish awaiting its `published` answer."""

    __slots__ = ("frame_id", "wire", "sent_on", "done", "result", "error")

    def __init__(self, frame_id: str, wire: str) -> None:
        self.frame_id = frame_id
        self.wire = wire
        self.sent_on: int | None = None  # generation of the connection it was last sent on
        self.done = trio.Event()
        self.result: PublishResult | None = None
        self.error: ClientError | None = None

    async def wait(self) -> PublishResult:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Outbox:
    """Insertion-ordered pending publishes, keyed by frame id."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._pending

    def get(self, frame_id: str) -> Pending | None:
        return self._pending.get(frame_id)

    def add(self, frame_id: str, wire: str) -> Pending:
        entry = Pending(frame_id, wire)
        self._pending[frame_id] = entry
        return entry

    def unsent(self, generation: int) -> list[Pending]:
        """Entries not yet sent on connection ``generation``, oldest first."""
        return [p for p in self._pending.values() if p.sent_on != generation]

    def resolve(self, frame_id: str, payload: dict[str, Any]) -> bool:
        entry = self._pending.pop(frame_id, None)
        if entry is None:
            return False
        entry.result = PublishResult(frame_id, payload["channel"], payload["seq"], payload["epoch"])
        entry.done.set()
        return True

    def fail(self, frame_id: str, error: ClientError) -> bool:
        entry = self._pending.pop(frame_id, None)
        if entry is None:
            return False
        entry.error = error
        entry.done.set()
        return True

    def fail_all(self, error: ClientError) -> None:
        for frame_id in list(self._pending):
            self.fail(frame_id, error)
