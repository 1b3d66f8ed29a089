"""wsserver: a Trio WebSocket server whose channels never lose an event.

Every channel event carries a per-channel sequence number; a client that reconnects with
``lastSeq`` gets exactly what it missed (or a snapshot), in order, once.
"""

__version__ = "0.1.0"
