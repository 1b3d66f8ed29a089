"""The WebSocket transport: the listener and handshake (``server``), one connection after its
handshake (``websocket``: wsproto's frame protocol over a Trio stream), what a connection needs of
any transport (``base.Transport``), and an in-memory one for tests (``memory``)."""

from wsserver.transport.base import CloseReason as CloseReason
from wsserver.transport.base import ConnectionClosed as ConnectionClosed
from wsserver.transport.base import PongWaiter as PongWaiter
from wsserver.transport.base import Transport as Transport
from wsserver.transport.server import HANDSHAKE_TIMEOUT as HANDSHAKE_TIMEOUT
from wsserver.transport.server import WS_PATH as WS_PATH
from wsserver.transport.server import make_server_ssl_context as make_server_ssl_context
from wsserver.transport.server import serve_websockets as serve_websockets
from wsserver.transport.websocket import WsConnection as WsConnection
