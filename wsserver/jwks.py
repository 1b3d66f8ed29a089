"""Token keys by id (`kid`) from a JWKS document — a file or an `https://` URL — parsed by
pyjwt's own JWKS support (``PyJWKSet``), cached, and re-read when a token names an unknown key.

Bounded on every side: one fetch at a time, at most one re-read per ``REFRESH_MIN_INTERVAL``
however many unknown `kid`s arrive (a flood of forged kids cannot turn into a flood of fetches),
a fetch timeout, a response size limit and a key count limit. Symmetric (`oct`) keys in a JWKS
are refused: a JWKS names public keys; HS256 has its own setting (`jwt_secret`).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import jwt
import orjson
import trio

log = logging.getLogger("wsserver.jwks")

#: Seconds between two reads of the JWKS caused by unknown `kid`s (CONTRACT §4: rate-limited).
REFRESH_MIN_INTERVAL: Final = 60.0
#: Seconds after which a JWKS URL is re-read anyway (picks up revoked keys).
MAX_AGE: Final = 15 * 60.0
#: Seconds a JWKS fetch may take.
FETCH_TIMEOUT: Final = 5.0
#: Largest JWKS document read (bytes).
MAX_DOCUMENT: Final = 1024 * 1024
#: Most keys kept from one document.
MAX_KEYS: Final = 100
#: Signature algorithms a JWKS key may carry (never `none`, never a symmetric one).
ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class JwksError(Exception):
    """The JWKS could not be read or holds no usable key; the message says why, in plain words."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_source(source: str) -> str | None:
    """Why ``source`` cannot be a JWKS location (None: it can). Plain http is allowed to
    loopback only (a local key service, tests); anything else needs https."""
    if "://" not in source:
        return None if Path(source).is_file() else f"file {source} not found"
    parts = urlsplit(source)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return None
    return "must be a file path or an https:// URL (http:// only to a loopback address)"


def parse_jwks(document: bytes) -> dict[str, jwt.PyJWK]:
    """kid → key, from a JWKS document; keys without a `kid`, of an unsupported type or
    algorithm, or symmetric, are skipped (and logged). Raises JwksError when none is usable."""
    try:
        data = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise JwksError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksError("not a JWKS document (an object with a `keys` list)")
    keys: dict[str, jwt.PyJWK] = {}
    for raw in data["keys"][: MAX_KEYS * 4]:
        if not isinstance(raw, dict):
            continue
        kid = raw.get("kid")
        if not isinstance(kid, str) or not kid:
            log.warning("JWKS: skipping a key without `kid`")
            continue
        if raw.get("kty") == "oct":
            log.warning("JWKS: skipping symmetric key %r (use jwt_secret for HS256)", kid)
            continue
        if raw.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(raw)
        except jwt.PyJWKError as exc:
            log.warning("JWKS: skipping key %r: %s", kid, exc)
            continue
        if key.algorithm_name not in ALGORITHMS:
            log.warning("JWKS: skipping key %r: algorithm %s not accepted", kid, key.algorithm_name)
            continue
        keys[kid] = key
        if len(keys) >= MAX_KEYS:
            break
    if not keys:
        raise JwksError("no usable signing key (each needs a `kid`; RSA, EC or Ed25519 public keys)")
    return keys


class KeySet:
    """The keys of one JWKS source, refreshed on demand.

    Args:
        source: a file path or a URL (see ``check_source``).
        clock: monotonic seconds (tests pass a fake one).
        http: builds the httpx client used for fetches (tests may add TLS trust).
    """

    def __init__(
        self,
        source: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        http: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self.source = source
        self.is_url = "://" in source
        self._clock = clock
        self._http = http or (lambda: httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False))
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._tried_at: float | None = None
        self._lock = trio.Lock()
        self.last_error = ""
        self.refreshes = 0

    def get(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def load_file_now(self) -> None:
        """Reads a file source synchronously (at start-up, so a bad file stops the server)."""
        if self.is_url:
            raise ValueError("load_file_now is for file sources")
        self._keys = parse_jwks(self._read_file())
        self._loaded_at = self._tried_at = self._clock()

    def _read_file(self) -> bytes:
        try:
            with open(self.source, "rb") as f:
                data = f.read(MAX_DOCUMENT + 1)
        except OSError as exc:
            raise JwksError(f"cannot read {self.source}: {exc.strerror or exc}") from None
        if len(data) > MAX_DOCUMENT:
            raise JwksError(f"larger than {MAX_DOCUMENT} bytes")
        return data

    async def _fetch(self) -> bytes:
        if not self.is_url:
            return await trio.to_thread.run_sync(self._read_file)
        try:
            async with self._http() as client, client.stream("GET", self.source) as response:
                if response.status_code != 200:
                    raise JwksError(f"HTTP {response.status_code}")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_DOCUMENT:
                        raise JwksError(f"larger than {MAX_DOCUMENT} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise JwksError(f"fetch failed: {type(exc).__name__}: {exc}") from None

    async def refresh(self, *, force: bool = False) -> bool:
        """Re-reads the source unless it was tried less than ``REFRESH_MIN_INTERVAL`` ago
        (``force``: regardless). Concurrent callers share one read. True when keys changed."""
        asked = self._clock()
        async with self._lock:
            if self._tried_at is not None and self._tried_at >= asked:
                return False  # another caller read it while we waited
            if not force and self._tried_at is not None and asked - self._tried_at < REFRESH_MIN_INTERVAL:
                return False
            self._tried_at = self._clock()
            try:
                with trio.fail_after(FETCH_TIMEOUT + 1):
                    keys = parse_jwks(await self._fetch())
            except (JwksError, trio.TooSlowError) as exc:
                self.last_error = str(exc) or "timed out"
                log.error("JWKS %s could not be read (keeping %d known keys): %s",
                          self.source, len(self._keys), self.last_error)
                return False
            changed = keys.keys() != self._keys.keys()
            self._keys, self._loaded_at, self.last_error = keys, self._clock(), ""
            self.refreshes += 1
            if changed:
                log.info("JWKS %s: keys %s", self.source, ", ".join(sorted(keys)))
            return changed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Loads the keys (a URL that cannot be read yet is retried; tokens fail meanwhile), then
        re-reads a URL every ``MAX_AGE`` until cancelled; supports ``nursery.start``."""
        if not self._keys:
            await self.refresh(force=True)
        task_status.started()
        while True:
            await trio.sleep(MAX_AGE if self._keys else REFRESH_MIN_INTERVAL)
            await self.refresh(force=True)

    def statistics(self) -> dict[str, Any]:
        return {"source": self.source, "keys": len(self._keys), "refreshes": self.refreshes, "error": self.last_error}
