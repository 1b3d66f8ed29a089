"""The WebSocket transport: the listener and handshake policy (``server``), one connection as
the server sees it (``connection``), and every reach into trio-websocket/wsproto/trio internals
in one place checked at import (``_compat``)."""

from wsserver.transport._compat import TransportCompatError as TransportCompatError
from wsserver.transport.connection import ConnectionClosed as ConnectionClosed
from wsserver.transport.connection import PongWaiter as PongWaiter
from wsserver.transport.connection import WsTransport as WsTransport
from wsserver.transport.server import HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT
from wsserver.transport.server import WS_PATH as WS_PATH
from wsserver.transport.server import make_server_ssl_context as make_server_ssl_context
from wsserver.transport.server import serve_websockets as serve_websockets
