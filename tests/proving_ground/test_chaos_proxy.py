"""Each fault of the chaos proxy does what it says, measured with raw TCP echo traffic (the
proxy is protocol-blind) and with the CLI entry point."""

from __future__ import annotations

import functools

import attrs
import pytest
import trio

from wsserver.chaos_proxy import PROFILES, ChaosProxy, Profile, build_parser, main


async def echo_server(nursery: trio.Nursery) -> int:
    async def echo(stream: trio.SocketStream) -> None:
        try:
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the proxy reset us: that is the test

    listeners = await nursery.start(trio.serve_tcp, echo, 0)
    return listeners[0].socket.getsockname()[1]


async def start_proxy(nursery: trio.Nursery, profile: Profile | str = "clean", seed: int = 1) -> ChaosProxy:
    port = await echo_server(nursery)
    proxy = ChaosProxy("127.0.0.1", port, profile, seed=seed)
    await nursery.start(proxy.run)
    return proxy


async def roundtrip(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        chunk = await stream.receive_some()
        if not chunk:
            break
        got += chunk
    return got


async def test_clean_forwards_both_ways(nursery):
    proxy = await start_proxy(nursery)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        assert await roundtrip(stream, b"hello" * 1000) == b"hello" * 1000
    assert proxy.stats.connections == 1 and proxy.stats.bytes_up == proxy.stats.bytes_down == 5000


async def test_latency_delays_each_direction(nursery):
    proxy = await start_proxy(nursery, Profile("slow", latency=0.15))
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        start = trio.current_time()
        await roundtrip(stream, b"x")
        assert trio.current_time() - start >= 0.3  # 0.15 s each way


async def test_bandwidth_paces_bytes(nursery):
    proxy = await start_proxy(nursery, Profile("thin", bandwidth=100_000))
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        start = trio.current_time()
        assert await roundtrip(stream, b"b" * 50_000) == b"b" * 50_000
        assert trio.current_time() - start >= 0.4  # 50 kB at 100 kB/s, paced in both directions


async def test_reset_cuts_the_connection(nursery):
    proxy = await start_proxy(nursery)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        await roundtrip(stream, b"a")
        assert proxy.reset_all() == 1
        with pytest.raises(trio.BrokenResourceError):
            while await stream.receive_some():
                pass  # pragma: no cover - a reset yields no more data


async def test_blackhole_drops_without_closing(nursery):
    proxy = await start_proxy(nursery)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        await roundtrip(stream, b"a")
        proxy.blackhole_all()
        await stream.send_all(b"lost")
    with trio.move_on_after(0.5) as silent:
        data = await stream.receive_some()
        pytest.fail(f"a black hole delivered {data!r}")
    assert silent.cancelled_caught  # nothing arrives, and the connection is not closed either
    assert len(proxy.pipes) == 1
    await stream.aclose()  # the client gives up; the pipe ends once the far side closes too


async def test_stall_holds_then_delivers(nursery):
    proxy = await start_proxy(nursery)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        await roundtrip(stream, b"a")
        proxy.stall_all(0.4)
        start = trio.current_time()
        assert await roundtrip(stream, b"later") == b"later"
        assert trio.current_time() - start >= 0.35


async def test_switch_cuts_all_and_refuses_during_the_outage(nursery):
    proxy = await start_proxy(nursery)
    with trio.fail_after(5):
        streams = [await trio.open_tcp_stream("127.0.0.1", proxy.port) for _ in range(3)]
        for s in streams:
            await roundtrip(s, b"a")
        assert proxy.switch(outage=0.3) == 3
        for s in streams:
            with pytest.raises(trio.BrokenResourceError):
                await s.receive_some()
        refused = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        with pytest.raises(trio.BrokenResourceError):
            await roundtrip(refused, b"a")
        await trio.sleep(0.35)
        fresh = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        assert await roundtrip(fresh, b"back") == b"back"
    assert proxy.stats.refused == 1 and proxy.stats.switches == 1


async def test_random_resets_follow_the_seed(nursery):
    """The same seed draws the same fault times: the k-th connection dies after the same wait."""
    profile = Profile("flaky", reset_every=0.2)

    async def lifetimes(seed: int) -> list[float]:
        proxy = await start_proxy(nursery, profile, seed=seed)
        out = []
        with trio.fail_after(10):
            for _ in range(3):
                stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
                start = trio.current_time()
                try:
                    while True:
                        await roundtrip(stream, b"p")
                        await trio.sleep(0.01)
                except trio.BrokenResourceError:
                    out.append(trio.current_time() - start)
        return out

    first, again, other = await lifetimes(5), await lifetimes(5), await lifetimes(6)
    assert all(abs(a - b) < 0.05 for a, b in zip(first, again)), (first, again)
    assert any(abs(a - b) > 0.05 for a, b in zip(first, other)), (first, other)


def test_profiles_and_cli_overrides():
    assert {"clean", "3g", "doze", "subway", "switch-storm"} <= set(PROFILES)
    ns = build_parser().parse_args(["--profile", "3g", "--latency", "0.5", "--target", "127.0.0.1:9", "--seed", "3"])
    assert (ns.profile, ns.latency, ns.target, ns.seed) == ("3g", 0.5, ("127.0.0.1", 9), 3)
    assert attrs.evolve(PROFILES["3g"], latency=0.5).bandwidth == PROFILES["3g"].bandwidth
    with pytest.raises(SystemExit):
        main(["--target", "nonsense"])


async def test_cli_proxies_a_real_sdk_session(server):
    """`wsserver chaos-proxy` as an operator runs it, in front of a real server."""
    import signal
    import subprocess
    import sys

    import wsclient
    from tests.support import free_port
    from tests.wsclient.harness import running_client, static_tokens

    port = free_port()
    argv = [sys.executable, "-m", "wsserver", "chaos-proxy", "--", "--listen", f"127.0.0.1:{port}",
            "--target", f"127.0.0.1:{server.port}", "--profile", "3g", "--seed", "3"]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(functools.partial(trio.run_process, argv, stdout=subprocess.PIPE, check=False))
            banner = await proc.stdout.receive_some()
            assert b"listening on 127.0.0.1:" in banner
            async with running_client(f"ws://127.0.0.1:{port}/ws", static_tokens("cli")) as (client, rec):
                result = await client.publish("cli.1", "a.b", {"via": "proxy"})
                assert result.seq == 1
            proc.send_signal(signal.SIGINT)
    assert proc.returncode == 0
