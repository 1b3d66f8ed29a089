"""Development credentials: when no API key or JWT key is configured, generate them once,
keep them in ``<data_dir>/dev-credentials.json`` (mode 0600) and reuse them on every start,
so tokens minted with `wsserver token` keep working across restarts."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Final

import attrs

from wsserver.config import Config, ConfigError

FILE_NAME: Final = "dev-credentials.json"


def credentials_path(config: Config) -> Path:
    return Path(config.data_dir) / FILE_NAME


def resolve_credentials(config: Config, *, create: bool = True) -> tuple[Config, bool]:
    """Fills a missing api_key / jwt_secret from (or into) the dev credentials file.

    Returns the completed config and whether development credentials are in use.
    """
    if not config.dev_mode:
        return config, False
    path = credentials_path(config)
    stored: dict[str, str] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"development credentials file {path} is unreadable: {exc}") from None
    changed = False
    if "api_key" not in stored:
        stored["api_key"] = secrets.token_urlsafe(24)
        changed = True
    if "jwt_secret" not in stored:
        stored["jwt_secret"] = secrets.token_urlsafe(32)
        changed = True
    if changed:
        if not create:
            raise ConfigError(
                "no jwt_secret configured and no development credentials found; run `wsserver serve` once "
                "or pass --jwt-secret"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(stored, fh, indent=2)
        except OSError as exc:
            raise ConfigError(f"cannot write development credentials to {path}: {exc}") from None
    updates = {}
    if config.api_key is None:
        updates["api_key"] = stored["api_key"]
    if not config.has_jwt_key:
        updates["jwt_secret"] = stored["jwt_secret"]
    return attrs.evolve(config, **updates), True
