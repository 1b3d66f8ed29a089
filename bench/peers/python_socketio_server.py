"""Peer: python-socketio (asyncio, aiohttp) with the same events as the node Socket.IO peer:
``m`` is broadcast to everyone, ``join`` enters rooms, ``p`` is sent to one room and acknowledged.

Usage: python python_socketio_server.py PORT   (prints READY when listening)
"""

from __future__ import annotations

import sys

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=600, ping_timeout=60)
app = web.Application()
sio.attach(app)


@sio.on("m")
async def on_m(sid, data):
    await sio.emit("m", data)


@sio.on("join")
async def on_join(sid, rooms):
    for room in rooms:
        await sio.enter_room(sid, room)
    return True


@sio.on("p")
async def on_p(sid, data):
    await sio.emit("m", data, room=data["room"])
    return True


async def ready(app_: web.Application) -> None:
    print("READY", flush=True)


if __name__ == "__main__":
    app.on_startup.append(ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
