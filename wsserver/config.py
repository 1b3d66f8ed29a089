"""Server configuration: one frozen attrs ``Config``, loaded from a TOML file, overridden by
``WSSERVER_<KEY>`` environment variables, overridden by command-line flags (CONTRACT §6).

Every bad value is refused up front with one line naming the key, so the server never half-starts.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from attrs import field, frozen

ENV_PREFIX: Final = "WSSERVER_"
_DURATION_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TRUE: Final = {"true", "1", "yes", "on"}
_FALSE: Final = {"false", "0", "no", "off"}


class ConfigError(Exception):
    """A configuration value is invalid; the message names the key and what is expected."""


def parse_duration(value: Any) -> float:
    """`25`, `2.5`, `250ms`, `10s`, `5m`, `72h`, `7d` → seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 25, 250ms, 10s, 5m, 72h or 7d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError("expected a duration like 25, 250ms, 10s, 5m, 72h or 7d")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError("expected a whole number")
    return int(text)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false (1 or 0)")


def parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        items = [v.strip() for v in str(value).split(",")]
    return tuple(v for v in items if v)


def parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise ValueError("expected a number") from None


def parse_workers(value: Any) -> str:
    """`auto` (one worker process per core) or a whole number of workers, 1-256."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    count = parse_int(value)
    if not 1 <= count <= 256:
        raise ValueError("expected auto or a whole number from 1 to 256")
    return str(count)


def parse_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    return str(value)


def _opt(kind: str, help: str, **kw: Any) -> Any:
    return field(metadata={"kind": kind, "help": help}, **kw)


@frozen
class Retention:
    """How long a channel's events are offered for replay: by age and by count."""

    ttl: float  # seconds
    max_events: int


@frozen
class ChannelRetention:
    """A `[[channels]]` table: retention for channels matching a glob ``pattern``."""

    pattern: str
    history_ttl: float | None = None
    history_max_events: int | None = None


@frozen
class Config:
    """Every setting of one server node. Durations are seconds."""

    host: str = _opt("str", "WebSocket listen address", default="0.0.0.0")
    port: int = _opt("port", "WebSocket listen port (0: any free port)", default=8080)
    api_host: str = _opt("str", "internal HTTP API listen address (keep it private)", default="127.0.0.1")
    api_port: int = _opt("port", "internal HTTP API port (0: any free port)", default=8081)
    api_key: str | None = _opt("secret", "bearer key for /api/ (development: generated)", default=None)
    jwt_secret: str | None = _opt("secret", "HS256 secret for client tokens (development: generated)", default=None)
    jwt_public_key: str | None = _opt("path", "PEM public key file for RS256/ES256 tokens", default=None)
    jwt_audience: str | None = _opt("str", "required `aud` claim, if set", default=None)
    jwt_issuer: str | None = _opt("str", "required `iss` claim, if set", default=None)
    jwt_leeway: float = _opt("duration", "clock skew allowed on exp/nbf (at most 60s)", default=0.0)
    jwt_key_id: str | None = _opt("str", "the only `kid` accepted in token headers, if set", default=None)
    jwt_jwks: str | None = _opt(
        "str", "JWKS file or https:// URL: token keys selected by `kid` (re-read on an unknown kid)", default=None
    )
    redis_url: str | None = _opt("secret", "Redis URL for multi-node mode (none: embedded single node)", default=None)
    workers: str = _opt(
        "workers", "worker processes sharing the WebSocket port (auto: one per core); more than 1 needs redis_url",
        default="1",
    )
    node_id: str | None = _opt("str", "this node's name in stats (default: hostname:port)", default=None)
    data_dir: str = _opt("path", "directory of the embedded durable event log", default="./data")
    heartbeat_interval: float = _opt("duration", "WebSocket ping interval", default=25.0)
    heartbeat_timeout: float = _opt("duration", "close a connection silent this long after a ping", default=10.0)
    auth_timeout: float = _opt("duration", "close (4008) a connection without `auth` after this", default=10.0)
    token_expiring_lead: float = _opt("duration", "send `token_expiring` this long before `exp`", default=60.0)
    max_message_size: int = _opt("int", "largest client frame in bytes (bigger: close 1009)", default=65536)
    history_ttl: float = _opt("duration", "replay window by age (per channel)", default=72 * 3600.0)
    history_max_events: int = _opt("int", "replay window by count (per channel)", default=10_000)
    allow_query_token: bool = _opt("bool", "accept ?token= on the WebSocket URL", default=False)
    allowed_origins: tuple[str, ...] = _opt(
        "list", "browser Origins allowed at the handshake (empty: any)", default=()
    )
    tls_cert: str | None = _opt("path", "PEM certificate chain: serve wss:// directly", default=None)
    tls_key: str | None = _opt("path", "PEM private key for tls_cert", default=None)
    send_queue_size: int = _opt("int", "outgoing frames queued per connection before close 4009", default=2048)
    send_queue_bytes: int = _opt(
        "int", "outgoing bytes queued per connection before close 4009 (frames are shared, not copied)",
        default=4 * 1024 * 1024,
    )
    max_channels_per_connection: int = _opt("int", "subscriptions per connection", default=128)
    catch_up_concurrency: int = _opt(
        "int", "replay pages in memory at once per node (each at most 256 KiB); more catch-ups wait", default=128
    )
    max_connections: int = _opt("int", "connections per node (more: handshake refused with 503)", default=100_000)
    max_connections_per_ip: int = _opt(
        "int", "connections per client IP (carrier NAT puts many phones behind one)", default=1000
    )
    max_connections_per_user: int = _opt("int", "connections per user (`sub`); more: close 4029", default=20)
    connection_rate: float = _opt("float", "new connections per second per node (more: 503)", default=1000.0)
    max_handshakes: int = _opt(
        "int", "handshakes in progress per node, counted from the TCP accept (more: dropped at once)", default=2000
    )
    rate_limit_frames: float = _opt("float", "client frames per second per connection (burst: 2 s)", default=100.0)
    rate_limit_bytes: float = _opt("float", "client bytes per second per connection (burst: 2 s)", default=1_048_576.0)
    max_json_depth: int = _opt("int", "deepest nesting of publish data and snapshot state", default=32)
    drain_timeout: float = _opt("duration", "on SIGTERM, wait this long for clients to close", default=10.0)
    log_level: str = _opt("str", "debug, info, warning or error", default="info")
    channels: tuple[ChannelRetention, ...] = field(default=(), metadata={"kind": "channels", "help": ""})

    @property
    def worker_count(self) -> int:
        """How many worker processes ``workers`` asks for (`auto`: the cores this process may use)."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
        return int(self.workers)

    @property
    def queue_bytes(self) -> int:
        """The outgoing byte bound in effect: ``send_queue_bytes``, and never less than two of the
        largest frames a publish can produce (so one big event can always be queued)."""
        return max(self.send_queue_bytes, 2 * self.max_message_size + 4096)

    @property
    def longest_history_ttl(self) -> float:
        """The longest replay window by age of any channel (publish ids are kept this long)."""
        return max([self.history_ttl, *(r.history_ttl for r in self.channels if r.history_ttl is not None)])

    def retention_for(self, channel: str) -> Retention:
        """Retention of ``channel``: the first matching `[[channels]]` pattern, else the defaults."""
        return _retention_lookup(self)(channel)

    @property
    def dev_mode(self) -> bool:
        """True when credentials are missing and will be generated for development."""
        return self.api_key is None or not self.has_jwt_key

    @property
    def has_jwt_key(self) -> bool:
        return self.jwt_secret is not None or self.jwt_public_key is not None or self.jwt_jwks is not None


@functools.cache
def _retention_lookup(config: Config):
    from wsserver.globs import compile_glob

    default = Retention(config.history_ttl, config.history_max_events)
    rules = [
        (
            compile_glob(rule.pattern),
            Retention(
                rule.history_ttl if rule.history_ttl is not None else config.history_ttl,
                rule.history_max_events if rule.history_max_events is not None else config.history_max_events,
            ),
        )
        for rule in config.channels
    ]

    @functools.lru_cache(maxsize=8192)
    def lookup(channel: str) -> Retention:
        for regex, retention in rules:
            if regex.fullmatch(channel):
                return retention
        return default

    return lookup


_PARSERS: Final = {
    "str": parse_str,
    "secret": parse_str,
    "path": parse_str,
    "port": parse_int,
    "int": parse_int,
    "workers": parse_workers,
    "float": parse_float,
    "duration": parse_duration,
    "bool": parse_bool,
    "list": parse_list,
}

OPTION_FIELDS: Final = tuple(a for a in attrs.fields(Config) if a.metadata.get("kind") in _PARSERS)


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _parse_value(key: str, kind: str, value: Any, source: str) -> Any:
    try:
        return _PARSERS[kind](value)
    except ValueError as exc:
        shown = "<hidden>" if kind == "secret" else repr(value)
        raise ConfigError(f"invalid {key} = {shown} (from {source}): {exc}") from None


def _parse_channels(value: Any, source: str) -> tuple[ChannelRetention, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"invalid channels (from {source}): expected [[channels]] tables")
    rules = []
    for i, table in enumerate(value):
        where = f"channels[{i}]"
        if not isinstance(table, dict) or not isinstance(table.get("pattern"), str) or not table["pattern"]:
            raise ConfigError(f"invalid {where} (from {source}): every [[channels]] table needs a `pattern` string")
        unknown = set(table) - {"pattern", "history_ttl", "history_max_events"}
        if unknown:
            raise ConfigError(f"unknown key {sorted(unknown)[0]!r} in {where} (from {source})")
        ttl = table.get("history_ttl")
        count = table.get("history_max_events")
        rules.append(
            ChannelRetention(
                pattern=table["pattern"],
                history_ttl=None if ttl is None else _parse_value(f"{where}.history_ttl", "duration", ttl, source),
                history_max_events=None
                if count is None
                else _parse_value(f"{where}.history_max_events", "int", count, source),
            )
        )
    return tuple(rules)


def load_config(
    *,
    config_file: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Builds the Config: defaults < TOML file < environment < flags (values not None).

    Raises:
        ConfigError: naming the first bad key, its source and what is expected.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {source} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {source} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
        known = {a.name: a for a in OPTION_FIELDS}
        for key, value in data.items():
            if key == "channels":
                values["channels"] = _parse_channels(value, source)
            elif key in known:
                values[key] = _parse_value(key, known[key].metadata["kind"], value, source)
            else:
                raise ConfigError(f"unknown configuration key {key!r} in {source}")
    for a in OPTION_FIELDS:
        raw = environ.get(env_name(a.name))
        if raw is not None and raw != "":
            values[a.name] = _parse_value(a.name, a.metadata["kind"], raw, env_name(a.name))
    for a in OPTION_FIELDS:
        raw = (flags or {}).get(a.name)
        if raw is not None:
            values[a.name] = _parse_value(a.name, a.metadata["kind"], raw, flag_name(a.name))
    config = Config(**values)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Cross-field and range checks. Raises ConfigError naming the key."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"invalid {key}: {why}")

    for key in ("port", "api_port"):
        if not 0 <= getattr(config, key) <= 65535:
            raise bad(key, "must be a port number 0-65535")
    if config.port and config.port == config.api_port and config.host == config.api_host:
        raise bad("api_port", "the internal API must not share the public WebSocket port")
    for key in ("heartbeat_interval", "heartbeat_timeout", "auth_timeout", "history_ttl", "drain_timeout"):
        if getattr(config, key) <= 0:
            raise bad(key, "must be greater than 0")
    if config.jwt_leeway > 60:
        raise bad("jwt_leeway", "must be at most 60s")
    if not 1024 <= config.max_message_size <= 16 * 1024 * 1024:
        raise bad("max_message_size", "must be between 1024 and 16777216 bytes")
    if config.history_max_events < 1:
        raise bad("history_max_events", "must be at least 1")
    if config.send_queue_size < 16:
        raise bad("send_queue_size", "must be at least 16")
    if config.send_queue_bytes < 65536:
        raise bad("send_queue_bytes", "must be at least 65536")
    for key in ("max_channels_per_connection", "catch_up_concurrency", "max_handshakes", "max_connections", "max_connections_per_ip", "max_connections_per_user"):
        if getattr(config, key) < 1:
            raise bad(key, "must be at least 1")
    for key in ("connection_rate", "rate_limit_frames", "rate_limit_bytes"):
        if getattr(config, key) <= 0:
            raise bad(key, "must be greater than 0")
    if not 2 <= config.max_json_depth <= 512:
        raise bad("max_json_depth", "must be between 2 and 512")
    if config.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise bad("log_level", "must be debug, info, warning or error")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise bad("tls_cert" if config.tls_cert is None else "tls_key", "tls_cert and tls_key go together")
    for key in ("tls_cert", "tls_key", "jwt_public_key"):
        path = getattr(config, key)
        if path is not None and not Path(path).is_file():
            raise bad(key, f"file {path} not found")
    if config.jwt_jwks is not None:
        from wsserver.jwks import check_source

        problem = check_source(config.jwt_jwks)
        if problem:
            raise bad("jwt_jwks", problem)
    if config.jwt_secret is not None and len(config.jwt_secret) < 16:
        raise bad("jwt_secret", "must be at least 16 characters")
    if config.worker_count > 1 and not config.redis_url:
        raise bad(
            "workers",
            f"{config.workers} worker processes need redis_url: workers share the Redis event log and backplane "
            "(the embedded log is one process's; run one worker without Redis)",
        )
    if config.api_key is not None and len(config.api_key) < 8:
        raise bad("api_key", "must be at least 8 characters")
    for rule in config.channels:
        if rule.history_max_events is not None and rule.history_max_events < 1:
            raise bad(f"channels[{rule.pattern}].history_max_events", "must be at least 1")
