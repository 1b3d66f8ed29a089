"""Test-only echo app on the server's own WebSocket stack, for Autobahn's echo-based cases:
`wsserver.transport.serve_websockets` (its listener, handshake, limits, supervision) + `text_frame`.

The product never echoes. This app swaps only the connection (the JSON protocol) for an echo
loop, so Autobahn judges the transport the server runs: wsproto's frame protocol in
`WsConnection` with the server's settings (`max_message_size`, handshake and close timeouts, the
`/ws` path policy, the per-connection failure boundary) and the server's own frame writer for
text (`send_frames([text_frame(...)])`). Binary messages, which the server never sends, are
framed by wsproto.

Configuration comes from the server's own loader (`wsserver.config.load_config`), so the same
`WSSERVER_*` variables apply with the same validation: e.g. `WSSERVER_PORT=0
WSSERVER_MAX_MESSAGE_SIZE=16777216 python -m tests.conformance.echo_app`. It prints
`listening PORT` once bound and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import signal
import sys

import trio
from wsproto.events import BytesMessage

from wsserver.codes import CloseCode
from wsserver.config import Config, load_config
from wsserver.framing import text_frame
from wsserver.transport import ConnectionClosed, WsConnection, serve_websockets


async def echo(transport: WsConnection, _query_token: str | None) -> None:
    """Echoes every message until the peer closes; then ends the connection as Connection.run does."""
    while True:
        try:
            message = await transport.receive()
        except ConnectionClosed:
            break
        try:
            if isinstance(message, str):
                await transport.send_frames([text_frame(message.encode("utf-8"))])
            else:
                await transport.send_frames([transport._ws.send(BytesMessage(data=message))])
        except ConnectionClosed:
            break
    if transport.close_code is None:
        await transport.close(CloseCode.NORMAL, "")


async def main(config: Config) -> None:
    async with trio.open_nursery() as handlers:

        def refused(reason: str) -> None:
            print(f"refused {reason}", file=sys.stderr, flush=True)

        ports = await handlers.start(
            lambda task_status: serve_websockets(
                echo,
                host=config.host,
                port=config.port,
                ssl_context=None,
                max_message_size=config.max_message_size,
                allowed_origins=config.allowed_origins,
                allow_query_token=config.allow_query_token,
                handler_nursery=handlers,
                # as wsserver.app derives it
                tcp_user_timeout_ms=int((config.heartbeat_interval + config.heartbeat_timeout) * 1000),
                on_refused=refused,
                task_status=task_status,
            )
        )
        print(f"listening {ports[0]}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        handlers.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, load_config())
