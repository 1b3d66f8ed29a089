"""The close codes of the wire protocol (CONTRACT §4) and what a client does after each.

A copy of the server's table (``wsserver.codes``) so the SDK runs without the server package;
``tests/wsclient/test_codes.py`` fails when the two disagree.
"""

from __future__ import annotations

import enum
from typing import Final


class Reconnect(enum.StrEnum):
    """What the client does after a connection ends with a given close code."""

    NEVER = "never"  # stop: the application must act (or it asked to close)
    AT_ONCE = "at_once"  # reconnect immediately (then with backoff if it keeps failing)
    BACKOFF = "backoff"  # reconnect after a full-jitter exponential delay
    NEW_TOKEN = "new_token"  # ask the token provider for a new token, then reconnect


#: Close code → advice, exactly as the server's ``CloseCode(...).reconnect``.
CLOSE_ADVICE: Final[dict[int, Reconnect]] = {
    1000: Reconnect.NEVER,
    1001: Reconnect.AT_ONCE,
    1009: Reconnect.BACKOFF,
    1011: Reconnect.BACKOFF,
    1013: Reconnect.BACKOFF,
    4001: Reconnect.NEW_TOKEN,
    4002: Reconnect.NEW_TOKEN,
    4003: Reconnect.NEVER,
    4008: Reconnect.AT_ONCE,
    4009: Reconnect.AT_ONCE,
    4029: Reconnect.BACKOFF,
}

#: The code the SDK reports when the link ended without a close frame (RFC 6455 "abnormal").
ABNORMAL: Final = 1006
#: Close code of a message above the server's ``maxMessageSize``.
MESSAGE_TOO_BIG: Final = 1009
#: Close code of a rejected token (the only one where a repeated token means "give up").
AUTH_FAILED: Final = 4001


def advice_for(code: int) -> Reconnect:
    """The advice for ``code``; a lost link (1006) is retried at once, other unknown codes with backoff."""
    if code in CLOSE_ADVICE:
        return CLOSE_ADVICE[code]
    return Reconnect.AT_ONCE if code == ABNORMAL else Reconnect.BACKOFF
