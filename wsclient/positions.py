"""Where the client keeps each channel's position (lastSeq and epoch): an interface an app
can back with its own storage, and the in-memory default."""

from __future__ import annotations

from typing import Protocol

from attrs import frozen


@frozen
class Position:
    """The last event the application received on a channel: its ``seq`` and the log's ``epoch``."""

    seq: int
    epoch: str | None = None


class PositionStore(Protocol):
    """Persists channel positions. Called from the client's task on every delivered event,
    snapshot and reset, so ``save`` must be quick (write-behind if the storage is slow)."""

    def load(self, channel: str) -> Position | None:
        """The stored position of ``channel``, or None when there is none."""
        ...

    def save(self, channel: str, position: Position) -> None:
        """Records ``position`` as the latest of ``channel``."""
        ...

    def forget(self, channel: str) -> None:
        """Drops ``channel``'s position (the app unsubscribed, or the server withdrew it)."""
        ...


class MemoryPositionStore:
    """The default :class:`PositionStore`: a dict, lost when the process ends."""

    def __init__(self) -> None:
        self._positions: dict[str, Position] = {}

    def load(self, channel: str) -> Position | None:
        return self._positions.get(channel)

    def save(self, channel: str, position: Position) -> None:
        self._positions[channel] = position

    def forget(self, channel: str) -> None:
        self._positions.pop(channel, None)
