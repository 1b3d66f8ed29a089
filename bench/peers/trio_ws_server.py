"""Peer: the naive Trio baseline, a trio-websocket broadcast server in which every text message
any client sends is sent to every connected client with one awaited ``send_message`` each.

Usage: python trio_ws_server.py PORT   (prints READY when listening)
"""

from __future__ import annotations

import sys

import trio
from trio_websocket import ConnectionClosed, serve_websocket

clients: set = set()


async def handler(request) -> None:
    ws = await request.accept()
    clients.add(ws)
    try:
        while True:
            message = await ws.get_message()
            for peer in tuple(clients):
                try:
                    await peer.send_message(message)
                except ConnectionClosed:
                    clients.discard(peer)
    except ConnectionClosed:
        pass
    finally:
        clients.discard(ws)


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_websocket, handler, "127.0.0.1", port, None)
        print("READY", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
