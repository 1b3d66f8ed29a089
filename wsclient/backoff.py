"""Reconnect delays: exponential growth with "full jitter" (a uniform draw below the ceiling),
so that thousands of phones cut off together do not come back together."""

from __future__ import annotations

import random

from attrs import frozen


@frozen
class Backoff:
    """Full-jitter exponential backoff: attempt ``n`` waits ``uniform(0, min(cap, base * 2**n))`` s."""

    base: float = 0.5
    cap: float = 20.0

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` (0-based) may draw."""
        return min(self.cap, self.base * 2 ** min(attempt, 30))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A delay for attempt ``attempt``, drawn from ``rng``."""
        return rng.uniform(0.0, self.ceiling(attempt))
