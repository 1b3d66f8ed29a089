"""A load generator of slow subscribers (a process of its own, so that its CPU and memory are
not the server's): N WebSocket clients subscribe to one channel and take one message every
``--interval`` seconds; a client closed by the server (4009, slow consumer) comes back with the
last seq it took, as an SDK would. Prints one JSON line of counts when it is told to stop (SIGTERM)
or after ``--duration``.

    python -m tests.hardening.slow_clients --url ws://127.0.0.1:8080/ws --count 1000 --channel big.c
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import socket
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, HandshakeError, wrap_client_stream

#: A phone's socket buffers little: the server's queue, not the kernel, takes the backlog.
RECEIVE_BUFFER = 16 * 1024
#: Handshakes this generator runs at once (the server caps handshakes in progress per address).
CONNECTING = 100

from tests.support import make_token


async def connect(url: str, nursery: trio.Nursery, connecting: trio.Semaphore):
    parts = urlsplit(url)
    async with connecting:
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        return await wrap_client_stream(nursery, stream, parts.hostname, parts.path, message_queue_size=1,
                                        max_message_size=1 << 20)


async def client(url: str, channel: str, interval: float, counts: dict, ready: trio.Semaphore,
                 connecting: trio.Semaphore) -> None:
    last_seq: int | None = None
    token = make_token("slow", ttl=3600)
    first = True
    while True:
        try:
            async with trio.open_nursery() as nursery:
                ws = await connect(url, nursery, connecting)
                await ws.send_message(json.dumps({"type": "auth", "id": "a", "timestamp": 0, "payload": {"token": token}}))
                payload = {"channel": channel} if last_seq is None else {"channel": channel, "lastSeq": last_seq}
                await ws.send_message(json.dumps({"type": "subscribe", "id": "s", "timestamp": 0, "payload": payload}))
                while True:
                    frame = json.loads(await ws.get_message())
                    if frame["type"] == "subscribed" and first:
                        first = False
                        ready.release()
                    if "seq" in frame and frame.get("channel") == channel:
                        last_seq = frame["seq"]
                        counts["events"] += 1
                    await trio.sleep(interval)
        except* ConnectionClosed as group:
            exc = group.exceptions[0]
            code = exc.reason.code if exc.reason is not None else 1006
            counts[str(code)] = counts.get(str(code), 0) + 1
        except* (HandshakeError, OSError, trio.BrokenResourceError):
            counts["refused"] = counts.get("refused", 0) + 1
        await trio.sleep(0.5)


async def main(args: argparse.Namespace) -> None:
    counts: dict = {"events": 0}
    ready = trio.Semaphore(args.count, max_value=args.count)
    for _ in range(args.count):
        ready.acquire_nowait()
    connecting = trio.Semaphore(CONNECTING)
    async with trio.open_nursery() as nursery:
        for _ in range(args.count):
            nursery.start_soon(client, args.url, args.channel, args.interval, counts, ready, connecting)
        for _ in range(args.count):
            await ready.acquire()
        print(json.dumps({"ready": args.count}), flush=True)
        with trio.move_on_after(args.duration):
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    break
        print(json.dumps(counts), flush=True)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=300.0)
    started = time.monotonic()
    trio.run(main, parser.parse_args())
    sys.exit(0)
