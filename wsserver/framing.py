"""WebSocket framing of server→client text frames (RFC 6455 §5.2): a leaf module, so that the
store, the outbox and the transport share it without importing each other.

Server frames are unmasked, so a channel event's frame is the same bytes for every subscriber:
its JSON (encoded once, when it was stored) plus a 2-10 byte header. The two are written as two
buffers of one vectored write, so the JSON is never copied per event or per subscriber.
"""

from __future__ import annotations

import struct
from typing import Final

_OP_TEXT: Final = 0x81  # FIN + text opcode
#: Headers of payloads shorter than 126 bytes, prebuilt (most control frames).
_SHORT: Final = tuple(bytes((_OP_TEXT, n)) for n in range(126))


def text_header(length: int) -> bytes:
    """The header of one unfragmented, unmasked text frame carrying ``length`` payload bytes."""
    if length < 126:
        return _SHORT[length]
    if length < 65536:
        return struct.pack("!BBH", _OP_TEXT, 126, length)
    return struct.pack("!BBQ", _OP_TEXT, 127, length)


def text_frame(payload: bytes) -> bytes:
    """Header and payload as one buffer (for callers that want a single bytes object)."""
    return text_header(len(payload)) + payload
