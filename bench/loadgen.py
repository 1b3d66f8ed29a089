"""A load-generator process: holds client connections and runs the publisher, driven by one JSON
command per line on stdin and answering one JSON line per step on stdout (see bench/driver.py).

Operations: ``connect`` (subscribers, optionally counting a replay until each has N events),
``arm`` (count live deliveries until each connection has its expected number; latencies),
``pub_connect`` and ``publish`` (closed loop with a window, or open loop at a fixed rate),
``close``. Every answer reports this process's own CPU seconds, so the report can tell when the
generator, not the server, was the bottleneck.
"""

from __future__ import annotations

import json
import os
import resource
import select
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wire import Conn, HttpPublisher, is_ack, is_data, publish_message, sent_time


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def count_with_epoll(pairs: list[tuple[Conn, int]], kind: str, want_latency: bool,
                     deadline: float) -> tuple[list[float], list[float], list[int], int, bool]:
    """Counts deliveries on every connection until each has its expected number, in one thread
    with epoll and non-blocking reads (no Trio task per connection): a task wake-up per event
    cost the generator ~40 µs a delivery, more than the server under test spent on it, so with
    one event in flight at a time (one frame per read) the generator, not the server, was what
    the benchmark measured. Pings are answered inline."""
    poller = select.epoll()
    by_fd: dict[int, list] = {}
    for conn, expected in pairs:
        fd = conn.stream.socket.fileno()
        by_fd[fd] = [conn, expected, 0, None]  # conn, expected, got, first
        poller.register(fd, select.EPOLLIN)
    firsts: list[float] = []
    lasts: list[float] = []
    lat: list[int] = []
    received = 0
    try:
        while by_fd:
            left = deadline - time.monotonic()
            if left <= 0:
                return firsts, lasts, lat, received, True
            for fd, _mask in poller.poll(min(left, 1.0)):
                state = by_fd.get(fd)
                if state is None:
                    continue
                conn = state[0]
                try:
                    data = os.read(fd, 262144)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                now = time.monotonic()
                if not data:
                    poller.unregister(fd)
                    del by_fd[fd]
                    continue
                out = conn.feed(data)
                if out:
                    os.write(fd, out)
                pending = conn.pending
                got = 0
                while pending:
                    msg = pending.popleft()
                    if is_data(kind, msg):
                        got += 1
                        if want_latency:
                            t = sent_time(msg)
                            if t is not None:
                                lat.append(int((now - t) * 1e6))
                if got:
                    if state[3] is None:
                        state[3] = now
                        firsts.append(now)
                    state[2] += got
                    received += got
                    if state[2] >= state[1]:
                        lasts.append(now)
                        poller.unregister(fd)
                        del by_fd[fd]
        return firsts, lasts, lat, received, False
    finally:
        poller.close()


def answer(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.pubs: list[Conn] = []
        self.tracker: Conn | None = None
        self.http: HttpPublisher | None = None
        self.kind = "wsserver"

    async def _open(self, kind: str, host: str, port: int, token: str | None, channels: list[str],
                    last_seq: int | None) -> Conn:
        conn = await Conn.connect(kind, host, port)
        if kind == "wsserver":
            await conn.wsserver_setup(token or "", channels, last_seq)
        elif kind == "socketio" and channels:
            await conn.socketio_join(channels)
        return conn

    async def op_connect(self, cmd: dict) -> dict:
        """Opens one connection per spec; with ``expect`` each also counts that many events
        (a replay) and the answer says when the last one had them all."""
        self.kind = kind = cmd["kind"]
        specs = cmd["specs"]
        expect = cmd.get("expect")
        limiter = trio.CapacityLimiter(cmd.get("concurrency", 100))
        started = trio.current_time()
        cpu0 = cpu_seconds()
        done_at: list[float] = []
        failures: list[str] = []
        conns: list[Conn | None] = [None] * len(specs)

        async def one(i: int, spec: dict) -> None:
            async with limiter:
                try:
                    conn = await self._open(kind, cmd["host"], cmd["port"], cmd.get("token"), spec.get("channels", []),
                                            spec.get("last_seq"))
                except (OSError, ConnectionError, AssertionError, RuntimeError) as exc:
                    failures.append(repr(exc))
                    return
            conns[i] = conn
            if expect:
                got = 0
                while True:
                    while conn.pending:
                        if is_data(kind, conn.pending.popleft()):
                            got += 1
                    if got >= expect:
                        break
                    if not await conn.fill():
                        failures.append(f"closed {conn.closed_code}")
                        return
                done_at.append(trio.current_time() - started)

        with trio.move_on_after(cmd.get("timeout", 120)) as scope:
            async with trio.open_nursery() as nursery:
                for i, spec in enumerate(specs):
                    nursery.start_soon(one, i, spec)
        self.conns.extend(c for c in conns if c is not None)
        return {
            "connected": sum(c is not None for c in conns),
            "failures": failures[:5],
            "failed": len(failures),
            "timeout": scope.cancelled_caught,
            "seconds": trio.current_time() - started,
            "done_at": sorted(done_at),
            "cpu": cpu_seconds() - cpu0,
        }

    async def op_arm(self, cmd: dict) -> dict:
        """Counts events on every held connection until each has its expected count."""
        counts = cmd["counts"]
        if isinstance(counts, int):
            counts = [counts] * len(self.conns)
        want_latency = cmd.get("latency", False)
        kind = self.kind
        answer({"armed": True})
        lat: list[int] = []
        firsts: list[float] = []
        lasts: list[float] = []
        received = 0
        cpu0, wall0 = cpu_seconds(), time.monotonic()

        deadline = time.monotonic() + cmd.get("timeout", 60)
        pairs = [(conn, expected) for conn, expected in zip(self.conns, counts) if expected]
        firsts, lasts, lat, received, timed_out = await trio.to_thread.run_sync(
            count_with_epoll, pairs, kind, want_latency, deadline
        )
        return {
            "received": received,
            "expected": sum(counts),
            "timeout": timed_out,
            "first": min(firsts) if firsts else None,
            "last": max(lasts) if lasts else None,
            "lat_us": lat,
            "cpu": cpu_seconds() - cpu0,
            "wall": time.monotonic() - wall0,
        }

    async def op_pub_connect(self, cmd: dict) -> dict:
        """The publisher's connection (and, for closed-loop fan-out, a tracker subscribed last)."""
        self.kind = kind = cmd["kind"]
        for _ in range(cmd.get("publishers", 1)):
            self.pubs.append(await self._open(kind, cmd["host"], cmd["port"], cmd.get("token"), [], None))
        track = cmd.get("track")
        if track:
            self.tracker = await self._open(kind, track["host"], track["port"], cmd.get("token"), track["channels"], None)
        api = cmd.get("api")
        if api:
            self.http = await HttpPublisher.connect(api["host"], api["port"], api["key"])
        return {"ok": True}

    async def _publish_http(self, cmd: dict) -> dict:
        """``via: http``: events POSTed one at a time over the HTTP API (closed: each right after
        the previous answer; open: at ``rate``, each stamped with its intended send time)."""
        assert self.http is not None
        channels, count, mode, rate = cmd["channels"], cmd["count"], cmd["mode"], cmd.get("rate", 0.0)
        pad = "x" * cmd.get("pad", 0)
        broken: list[str] = []
        cpu0 = cpu_seconds()
        t_first = time.monotonic()
        sent = 0
        for i in range(count):
            due = None
            if mode == "open":
                due = t_first + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await trio.sleep(delay)
            try:
                status = await self.http.publish(channels[i % len(channels)], pad=pad, t=due)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                broken.append(f"HTTP publisher lost after {sent} publishes: {exc!r}")
                break
            if status != 200:
                broken.append(f"HTTP publish answered {status}")
                break
            sent += 1
        t_last = time.monotonic()
        return {"sent": sent, "t_first": t_first, "t_last": t_last, "acked": sent, "broken": broken,
                "cpu": cpu_seconds() - cpu0, "wall": t_last - t_first}

    async def op_publish(self, cmd: dict) -> dict:
        """Publishes ``count`` events over ``channels`` (cycled). Closed loop: at most ``window``
        events ahead of the acks (each publisher connection its own window), or with ``acks``
        off, of the tracker: the connection subscribed last, so the last to get each event in
        fan-out order (for the broadcast peers the publisher's own connection). Open loop: at
        ``rate`` per second regardless, each event stamped with its intended send time."""
        if cmd.get("via") == "http":
            return await self._publish_http(cmd)
        kind = self.kind
        pubs = self.pubs[:cmd.get("publishers", len(self.pubs))]
        tracker = self.tracker or pubs[0]
        channels: list[str] = cmd["channels"]
        count = cmd["count"]
        window = cmd.get("window", 32)
        use_acks = cmd.get("acks", False)
        mode = cmd["mode"]
        rate = cmd.get("rate", 0.0)
        pad = "x" * cmd.get("pad", 0)
        acked = [0] * len(pubs)
        state = {"tracked": 0}
        broken: list[str] = []
        dead: set[int] = set()  # publisher connections the server closed
        lot = trio.lowlevel.ParkingLot()
        cpu0 = cpu_seconds()

        async def pump(conn: Conn, index: int | None) -> None:
            while True:
                if not conn.pending and not await conn.fill():
                    if index is not None:
                        dead.add(index)
                        broken.append(f"publisher {index} closed by the server (code {conn.closed_code})")
                    lot.unpark_all()
                    return
                acks = data = 0
                while conn.pending:
                    msg = conn.pending.popleft()
                    if is_data(kind, msg):
                        data += 1
                    elif is_ack(kind, msg):
                        acks += 1
                if index is not None:
                    acked[index] += acks
                state["tracked"] += data
                lot.unpark_all()

        async def publisher(index: int, numbers: range) -> None:
            conn = pubs[index]
            for n, i in enumerate(numbers):
                channel = channels[i % len(channels)]
                ack_id = n if use_acks and kind == "socketio" else None
                if mode == "closed":
                    while n - (acked[index] if use_acks else state["tracked"]) >= window and index not in dead:
                        await lot.park()
                    if index in dead:
                        return
                    msg = publish_message(kind, channel, ack_id=ack_id, pad=pad)
                else:
                    due = t_first + i / rate  # the intended time: no coordinated omission
                    delay = due - time.monotonic()
                    if delay > 0:
                        await trio.sleep(delay)
                    msg = publish_message(kind, channel, ack_id=ack_id, pad=pad, t=due)
                try:
                    await conn.send(msg)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    broken.append(f"publisher {index} lost after {n} publishes: {exc!r}")
                    return
            if use_acks:
                with trio.move_on_after(30):
                    while acked[index] < len(numbers) and index not in dead:
                        await lot.park()

        t_first = time.monotonic()
        async with trio.open_nursery() as nursery:
            for index, conn in enumerate(pubs):
                nursery.start_soon(pump, conn, index)
            if tracker is not pubs[0]:
                nursery.start_soon(pump, tracker, None)
            async with trio.open_nursery() as senders:
                for index in range(len(pubs)):
                    senders.start_soon(publisher, index, range(index, count, len(pubs)))
            t_last = time.monotonic()
            nursery.cancel_scope.cancel()
        return {"sent": count, "t_first": t_first, "t_last": t_last, "acked": sum(acked), "broken": broken,
                "cpu": cpu_seconds() - cpu0, "wall": t_last - t_first}

    async def op_close(self, cmd: dict) -> dict:
        for conn in [*self.conns, *self.pubs, *([self.tracker] if self.tracker else [])]:
            await conn.aclose()
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        self.conns = []
        return {"closed": True}


async def main() -> None:
    worker = Worker()
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        cmd = json.loads(line)
        result = await getattr(worker, "op_" + cmd["op"])(cmd)
        answer(result)
        if cmd["op"] == "close":
            return


if __name__ == "__main__":
    trio.run(main)
