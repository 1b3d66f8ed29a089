"""`wsserver chaos-proxy`: a TCP proxy (client ↔ proxy ↔ server) that injects mobile-network
faults — latency and jitter, bandwidth limits, resets, black holes, stalls and network switches.

It is a pure byte proxy and knows nothing of the WebSocket protocol. Faults come from a named
profile (``clean``, ``3g``, ``doze``, ``subway``, ``switch-storm``) drawn from a seeded RNG, or are
triggered by a test through :class:`ChaosProxy`'s methods. See docs/chaos-proxy.md.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import random
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Final, Literal

import attrs
import trio
from attrs import define, frozen

#: Bytes read from a socket at a time (one chunk is the unit of delay and of bandwidth pacing).
CHUNK: Final = 16384
#: Chunks in flight per direction of one connection before the proxy stops reading (backpressure).
PIPE_DEPTH: Final = 64

log = logging.getLogger("wsserver.chaos_proxy")

Direction = Literal["up", "down", "both"]


@frozen
class Profile:
    """A named set of fault rates. Times in seconds; ``*_every`` is a mean interval (exponential)
    per connection, except ``switch_every`` which is for the whole proxy; None disables a fault."""

    name: str
    latency: float = 0.0  # added one-way delay
    jitter: float = 0.0  # extra uniform delay 0..jitter (order is kept, as TCP does)
    bandwidth: int | None = None  # bytes/s per direction per connection
    reset_every: float | None = None  # connection reset (RST both ways)
    blackhole_every: float | None = None  # stop forwarding for good, without closing
    stall_every: float | None = None  # stop forwarding, then resume (a short radio blip)
    stall_for: tuple[float, float] = (0.5, 3.0)
    switch_every: float | None = None  # network switch: every connection cut at once
    switch_outage: float = 0.0  # after a switch, new connections are refused this long


PROFILES: Final[dict[str, Profile]] = {
    "clean": Profile("clean"),
    "3g": Profile("3g", latency=0.1, jitter=0.1, bandwidth=48_000, reset_every=120.0),
    "doze": Profile("doze", latency=0.05, jitter=0.05, blackhole_every=40.0, stall_every=15.0, stall_for=(1.0, 8.0)),
    "subway": Profile(
        "subway", latency=0.08, jitter=0.2, bandwidth=32_000, reset_every=10.0, blackhole_every=20.0,
        stall_every=8.0, stall_for=(0.5, 3.0), switch_every=30.0, switch_outage=2.0,
    ),
    "switch-storm": Profile("switch-storm", latency=0.02, jitter=0.03, switch_every=3.0, switch_outage=0.5),
}


@define
class ProxyStats:
    """Counters of what the proxy did (for test figures)."""

    connections: int = 0
    refused: int = 0
    resets: int = 0
    blackholes: int = 0
    stalls: int = 0
    switches: int = 0
    switched: int = 0  # connections cut by switches
    bytes_up: int = 0
    bytes_down: int = 0


def _rst_on_close(stream: trio.abc.Stream) -> None:
    """Makes the next close send RST instead of FIN (SO_LINGER 0)."""
    if isinstance(stream, trio.SocketStream):
        try:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed by the peer: nothing left to reset


class Pipe:
    """One proxied connection: two directions, each a reader and a paced writer."""

    def __init__(self, proxy: ChaosProxy, pipe_id: int, client: trio.SocketStream, rng: random.Random) -> None:
        self.proxy = proxy
        self.id = pipe_id
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.rng = rng
        self.blackholed: set[str] = set()
        self.stall_until = 0.0
        self.scope = trio.CancelScope()

    # ---------------------------------------------------------------- faults

    def reset(self) -> None:
        """Cuts the connection both ways with RST, as a lost radio link or a NAT reboot does."""
        _rst_on_close(self.client)
        if self.upstream is not None:
            _rst_on_close(self.upstream)
        self.scope.cancel()

    def blackhole(self, direction: Direction = "both") -> None:
        """Silently drops everything (data, FIN, RST) in ``direction`` from now on."""
        self.blackholed |= {"up", "down"} if direction == "both" else {direction}

    def stall(self, seconds: float) -> None:
        """Holds every byte for ``seconds``, then delivers it (the connection survives)."""
        self.stall_until = max(self.stall_until, trio.current_time() + seconds)

    # ---------------------------------------------------------------- run

    async def run(self) -> None:
        profile = self.proxy.profile
        try:
            with self.scope:
                try:
                    self.upstream = await trio.open_tcp_stream(self.proxy.target_host, self.proxy.target_port)
                except OSError as exc:
                    log.info("pipe %d: upstream unreachable: %s", self.id, exc)
                    _rst_on_close(self.client)
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._direction, "up", self.client, self.upstream)
                    nursery.start_soon(self._direction, "down", self.upstream, self.client)
                    if profile.reset_every or profile.blackhole_every or profile.stall_every:
                        nursery.start_soon(self._random_faults, nursery.cancel_scope)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.client)
                if self.upstream is not None:
                    await trio.aclose_forcefully(self.upstream)
            self.proxy._pipes.pop(self.id, None)

    async def _direction(self, name: str, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](PIPE_DEPTH)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write, name, receive, dst)
            async with send:
                last_at = 0.0
                while True:
                    try:
                        data = await src.receive_some(CHUNK)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        if name in self.blackholed:
                            return  # a black hole swallows the peer's reset too
                        self.scope.cancel()
                        return
                    if not data:
                        if name not in self.blackholed:
                            await send.send((last_at, b""))
                        return
                    if name in self.blackholed:
                        continue
                    profile = self.proxy.profile
                    delay = profile.latency + (self.rng.uniform(0, profile.jitter) if profile.jitter else 0.0)
                    last_at = max(last_at, trio.current_time() + delay)
                    await send.send((last_at, data))

    async def _write(self, name: str, receive: trio.MemoryReceiveChannel[tuple[float, bytes]], dst: trio.SocketStream) -> None:
        async with receive:
            async for deliver_at, data in receive:
                await trio.sleep_until(deliver_at)
                while trio.current_time() < self.stall_until:
                    await trio.sleep_until(self.stall_until)
                if name in self.blackholed:
                    continue
                stats = self.proxy.stats
                if name == "up":
                    stats.bytes_up += len(data)
                else:
                    stats.bytes_down += len(data)
                try:
                    if not data:
                        await dst.send_eof()
                        return
                    await dst.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    if name not in self.blackholed:
                        self.scope.cancel()
                    return
                bandwidth = self.proxy.profile.bandwidth
                if bandwidth:
                    await trio.sleep(len(data) / bandwidth)

    async def _random_faults(self, scope: trio.CancelScope) -> None:
        """Draws this connection's next fault from its own RNG (reproducible per ``--seed``)."""
        profile, stats = self.proxy.profile, self.proxy.stats
        kinds = [(k, e) for k, e in (("reset", profile.reset_every), ("blackhole", profile.blackhole_every),
                                     ("stall", profile.stall_every)) if e]
        while True:
            waits = sorted((self.rng.expovariate(1.0 / every), kind) for kind, every in kinds)
            wait, kind = waits[0]
            await trio.sleep(wait)
            if kind == "reset":
                stats.resets += 1
                self.reset()
                return
            if kind == "blackhole":
                stats.blackholes += 1
                self.blackhole()
                return
            stats.stalls += 1
            self.stall(self.rng.uniform(*profile.stall_for))


class ChaosProxy:
    """The proxy as a library. ``await nursery.start(proxy.run)`` returns the listening port.

    Args:
        target_host, target_port: the server.
        profile: fault rates (a :class:`Profile` or a name from ``PROFILES``); ``set_profile`` changes it live.
        listen_host, listen_port: where clients connect (port 0: a free one).
        seed: makes every random choice reproducible (per connection, by accept order).
    """

    def __init__(
        self, target_host: str, target_port: int, profile: Profile | str = "clean", *,
        listen_host: str = "127.0.0.1", listen_port: int = 0, seed: int = 0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.seed = seed
        self.port = 0
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._pipes: dict[int, Pipe] = {}
        self._refuse_until = 0.0

    @property
    def pipes(self) -> list[Pipe]:
        """The open connections, oldest first."""
        return list(self._pipes.values())

    def set_profile(self, profile: Profile | str) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile

    def reset_all(self) -> int:
        """Resets every open connection; returns how many."""
        pipes = self.pipes
        for pipe in pipes:
            pipe.reset()
        self.stats.resets += len(pipes)
        return len(pipes)

    def blackhole_all(self, direction: Direction = "both") -> int:
        pipes = self.pipes
        for pipe in pipes:
            pipe.blackhole(direction)
        self.stats.blackholes += len(pipes)
        return len(pipes)

    def stall_all(self, seconds: float) -> int:
        pipes = self.pipes
        for pipe in pipes:
            pipe.stall(seconds)
        self.stats.stalls += len(pipes)
        return len(pipes)

    def switch(self, outage: float | None = None) -> int:
        """Network switch: cuts every connection at once, and refuses new ones for ``outage`` s
        (default: the profile's). Reconnections come from new source ports, as after a Wi-Fi→LTE move."""
        self.stats.switches += 1
        outage = self.profile.switch_outage if outage is None else outage
        self._refuse_until = trio.current_time() + outage
        pipes = self.pipes
        for pipe in pipes:
            pipe.reset()
        self.stats.switched += len(pipes)
        return len(pipes)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serves until cancelled; supports ``nursery.start`` (started with the listening port)."""
        listeners = await trio.open_tcp_listeners(self.listen_port, host=self.listen_host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._switch_loop)
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _switch_loop(self) -> None:
        while True:
            every = self.profile.switch_every
            if not every:
                await trio.sleep(1.0)  # the profile may change at runtime
                continue
            await trio.sleep(self._rng.expovariate(1.0 / every))
            if self.profile.switch_every:
                self.switch()

    async def _handle(self, client: trio.SocketStream) -> None:
        pipe_id = next(self._ids)
        if trio.current_time() < self._refuse_until:
            self.stats.refused += 1
            _rst_on_close(client)
            await trio.aclose_forcefully(client)
            return
        self.stats.connections += 1
        pipe = Pipe(self, pipe_id, client, random.Random(f"{self.seed}:{pipe_id}"))
        self._pipes[pipe_id] = pipe
        await pipe.run()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsserver chaos-proxy",
        description="A TCP proxy that injects mobile-network faults between clients and a server.",
    )
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 9080), help="HOST:PORT (default 127.0.0.1:9080)")
    parser.add_argument("--target", type=_host_port, default=("127.0.0.1", 8080), help="server HOST:PORT (default 127.0.0.1:8080)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="clean", help="named fault profile (default clean)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    overrides = parser.add_argument_group("profile overrides (seconds, bytes/s)")
    for field in attrs.fields(Profile):
        if field.name in ("name", "stall_for"):
            continue
        kind = int if field.name == "bandwidth" else float
        overrides.add_argument("--" + field.name.replace("_", "-"), type=kind, default=None)
    return parser


def main(argv: Sequence[str]) -> int:
    """Entry point of `wsserver chaos-proxy ARGS`; runs until interrupted (Ctrl-C: exit 0)."""
    args = list(argv)
    if args[:1] == ["--"]:  # `wsserver chaos-proxy -- --listen …` (the top-level parser needs the `--`)
        args = args[1:]
    ns = build_parser().parse_args(args)
    changes = {f.name: getattr(ns, f.name) for f in attrs.fields(Profile)
               if f.name not in ("name", "stall_for") and getattr(ns, f.name) is not None}
    profile = attrs.evolve(PROFILES[ns.profile], **changes)
    proxy = ChaosProxy(ns.target[0], ns.target[1], profile, listen_host=ns.listen[0], listen_port=ns.listen[1], seed=ns.seed)

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(proxy.run)
                print(f"chaos-proxy {profile.name} (seed {ns.seed}) listening on {ns.listen[0]}:{port} → "
                      f"{ns.target[0]}:{ns.target[1]}", flush=True)
                async for _signal in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(serve)
    print(f"chaos-proxy stopped: {proxy.stats}", file=sys.stderr)
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
