"""Peer: a minimal asyncio `websockets` broadcast server; every text message any client sends
goes to every connected client through ``websockets.broadcast`` (no awaiting per client).

Usage: python websockets_server.py PORT   (prints READY when listening)
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

clients: set = set()


async def handler(ws) -> None:
    clients.add(ws)
    try:
        async for message in ws:
            broadcast(clients, message)
    finally:
        clients.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, ping_interval=None, max_queue=None):
        print("READY", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
