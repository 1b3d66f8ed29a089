"""The Textual admin console (`wsserver admin`): a live view of a running server's connections,
channels and per-subscription sequence lag, read from its internal HTTP API."""

from __future__ import annotations

__all__ = ["AdminApp", "run_admin"]


def __getattr__(name: str):  # keep `import admin_tui` cheap: Textual loads on first use
    if name in __all__:
        from admin_tui import app

        return getattr(app, name)
    raise AttributeError(name)
