"""Abuse limits: token buckets for frames and bytes per connection and for new connections,
and the admission counts (per node, per IP, per user) checked at the handshake and at auth."""

from __future__ import annotations

from collections import Counter
from typing import Final

import trio
from attrs import frozen

#: Refused frames in a row after which a flooding connection is closed with 4029.
FLOOD_STRIKES: Final = 20


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, amount: float, now: float) -> bool:
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= amount:
            self.tokens = tokens - amount
            return True
        self.tokens = tokens
        return False


class FrameLimiter:
    """Per-connection inbound limits: frames/s and bytes/s (burst: two seconds' worth). Two
    token buckets flattened into one small object (there is one per connection)."""

    __slots__ = ("frame_rate", "byte_rate", "frames", "bytes", "stamp", "strikes")

    def __init__(self, frames_per_second: float, bytes_per_second: float) -> None:
        self.frame_rate = frames_per_second
        self.byte_rate = bytes_per_second
        self.frames = 2 * frames_per_second
        self.bytes = 2 * bytes_per_second
        self.stamp = trio.current_time()
        self.strikes = 0

    def allow(self, size: int) -> bool:
        now = trio.current_time()
        elapsed = now - self.stamp
        self.stamp = now
        frames = min(2 * self.frame_rate, self.frames + elapsed * self.frame_rate)
        nbytes = min(2 * self.byte_rate, self.bytes + elapsed * self.byte_rate)
        ok = frames >= 1 and nbytes >= size
        if ok:
            frames -= 1
            nbytes -= size
        self.frames, self.bytes = frames, nbytes
        self.strikes = 0 if ok else self.strikes + 1
        return ok

    @property
    def flooding(self) -> bool:
        return self.strikes >= FLOOD_STRIKES


@frozen
class AdmissionLimits:
    max_connections: int
    max_connections_per_ip: int
    max_connections_per_user: int
    connection_rate: float  # new connections per second (burst: two seconds' worth)
    max_handshakes: int = 1 << 62  # TCP connections accepted whose upgrade is not done yet


class Admission:
    """Counts live connections per node, per IP and per user, and rate-limits new ones; counts
    handshakes in progress from the moment the TCP connection is accepted (a slowloris client
    holds a socket for the whole handshake deadline before any upgrade check could see it)."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.per_user: Counter[str] = Counter()
        self.handshaking = 0
        self.handshaking_per_ip: Counter[str] = Counter()
        self._rate = TokenBucket(limits.connection_rate, 2 * limits.connection_rate, trio.current_time())

    def begin_handshake(self, ip: str) -> str | None:
        """Counts an accepted TCP connection until ``end_handshake``; returns why it must be
        dropped at once instead (and counts nothing). One address may hold at most an eighth of
        the handshake slots, so one slowloris source cannot lock everyone else out. (The limits
        on established connections are checked at the upgrade request, answered with 503.)"""
        limits = self.limits
        if self.handshaking >= limits.max_handshakes:
            return "too many handshakes in progress"
        if self.handshaking_per_ip[ip] >= max(8, limits.max_handshakes // 8):
            return "too many handshakes in progress from this address"
        self.handshaking += 1
        self.handshaking_per_ip[ip] += 1
        return None

    def end_handshake(self, ip: str) -> None:
        self.handshaking -= 1
        self.handshaking_per_ip[ip] -= 1
        if self.handshaking_per_ip[ip] <= 0:
            del self.handshaking_per_ip[ip]

    def admit(self, ip: str) -> str | None:
        """Counts a new connection from ``ip``; returns why it is refused (and counts nothing)."""
        if self.total >= self.limits.max_connections:
            return "node connection limit reached"
        if self.per_ip[ip] >= self.limits.max_connections_per_ip:
            return "too many connections from this address"
        if not self._rate.take(1, trio.current_time()):
            return "too many new connections; retry shortly"
        self.total += 1
        self.per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]

    def admit_user(self, user_id: str) -> bool:
        if self.per_user[user_id] >= self.limits.max_connections_per_user:
            return False
        self.per_user[user_id] += 1
        return True

    def release_user(self, user_id: str) -> None:
        self.per_user[user_id] -= 1
        if self.per_user[user_id] <= 0:
            del self.per_user[user_id]


def json_depth_exceeds(value: object, limit: int) -> bool:
    """True when ``value`` nests objects/arrays deeper than ``limit`` (iterative, no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
