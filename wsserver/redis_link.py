"""The node's connection to Redis: one coredis client (standalone or Cluster, from the URL or
asked of the server), open for the node's lifetime and shared by the store, backplane and presence.

Key layout: every key of a channel carries the channel as its hash tag, ``wsserver:{<channel>}:…``,
and so does its pub/sub channel, ``wsserver:{<channel>}``: on a Redis Cluster the channel's seq,
stream, idempotency records, snapshot and (sharded) pub/sub all live on one shard.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import coredis
from coredis.connection import TCPLocation
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from wsserver.store.base import StoreUnavailable

log = logging.getLogger("wsserver.redis")

#: URL scheme that forces Redis Cluster mode (otherwise the server is asked: INFO cluster).
CLUSTER_SCHEME: Final = "redis+cluster://"
#: Seconds to wait for a reply before a command counts as failed (publishes then get 503).
COMMAND_TIMEOUT: Final = 3.0
#: Seconds to wait for a TCP connection to Redis.
CONNECT_TIMEOUT: Final = 2.0


def channel_key(channel: str, suffix: str) -> str:
    """A key of ``channel``'s data; the channel is the hash tag (one cluster slot per channel)."""
    return f"wsserver:{{{channel}}}:{suffix}"


def pubsub_channel(channel: str) -> str:
    """The Redis pub/sub (or shard) channel that carries ``channel``'s events."""
    return f"wsserver:{{{channel}}}"


def channel_of(pubsub_name: str) -> str:
    """Inverse of ``pubsub_channel``."""
    return pubsub_name[len("wsserver:{") : -1]


def _first(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class RedisLink:
    """One client for the node. ``open()`` decides standalone or cluster and keeps the client
    open (coredis clients are async context managers) until the block exits.

    The client never retries a command by itself: a retried EVALSHA whose first attempt ran
    but whose reply was lost would append twice. Callers see the error and decide.
    """

    def __init__(self, url: str) -> None:
        self.cluster = url.startswith(CLUSTER_SCHEME)
        self.url = "redis://" + url[len(CLUSTER_SCHEME) :] if self.cluster else url
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("RedisLink is not open")
        return self._client

    @property
    def where(self) -> str:
        """The URL without credentials, for messages."""
        rest = self.url.split("://", 1)[-1]
        return ("redis+cluster://" if self.cluster else "redis://") + rest.rsplit("@", 1)[-1]

    def _options(self) -> dict[str, Any]:
        return {
            "decode_responses": False,
            "retry_policy": NoRetryPolicy(),
            "stream_timeout": COMMAND_TIMEOUT,
            "connect_timeout": CONNECT_TIMEOUT,
        }

    @asynccontextmanager
    async def open(self) -> AsyncIterator[RedisLink]:
        """Connects and yields self; StoreUnavailable when Redis cannot be reached."""
        if not self.cluster:
            info: dict[str, Any] = {}
            try:
                async with coredis.Redis.from_url(self.url, **self._options()) as probe:
                    info = await probe.info("cluster")
            except* (RedisError, OSError) as group:
                raise StoreUnavailable(f"cannot reach Redis at {self.where}: {_first(group)}") from None
            self.cluster = str(info.get("cluster_enabled", "0")) == "1"
        if self.cluster:
            parts = urlsplit(self.url)
            seed = TCPLocation(parts.hostname or "localhost", parts.port or 6379)
            client: Any = coredis.RedisCluster.from_url(self.url, startup_nodes=[seed], **self._options())
        else:
            client = coredis.Redis.from_url(self.url, **self._options())
        async with client:
            self._client = client
            log.info("connected to %s (%s)", self.where, "cluster" if self.cluster else "standalone")
            try:
                yield self
            finally:
                self._client = None


__all__ = ["RedisError", "RedisLink", "channel_key", "channel_of", "pubsub_channel"]
