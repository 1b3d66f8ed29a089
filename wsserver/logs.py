"""Logging setup: one line per record, `key=value` fields after the message, UTC timestamps.
Nothing here (or anywhere) logs a token, an API key or an auth frame body."""

from __future__ import annotations

import logging
import sys
import time


class _Formatter(logging.Formatter):
    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter stays at warning even in debug mode (trio-websocket logs every frame).
    for name in ("trio-websocket", "hypercorn.error", "hypercorn.access", "wsserver.http.server"):
        logging.getLogger(name).setLevel(logging.WARNING)
