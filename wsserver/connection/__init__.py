"""One WebSocket connection, split by concern: supervision, dispatch and the write path
(``core``), deadlines on the node's timer wheel (``timers``), client publishes (``publishing``),
and catching subscriptions up from the store (``catch_up``)."""

from wsserver.connection.core import Connection as Connection
