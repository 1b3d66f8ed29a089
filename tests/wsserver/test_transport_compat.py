"""One test per hook of ``wsserver.transport._compat`` (every private name of trio-websocket,
wsproto and trio the transport uses), on real connections, plus the import-time check that turns
a library upgrade into a clear start-up error. End-to-end coverage of the same hooks: the session,
limits and hostile-input suites; these pin each hook on its own so an upgrade names the one that broke."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import trio
from trio_websocket import ConnectionClosed, connect_websocket_url

from tests.wsserver.harness import WAIT, start_server
from wsserver.framing import text_frame
from wsserver.transport import HANDSHAKE_TIMEOUT, PongWaiter, WsTransport, _compat, serve_websockets
from wsserver.limits import Admission, AdmissionLimits


async def _pair(nursery, *, admission=None, limits_refused=None):
    """A real listener (serve_websockets) and a real client; returns (server transport, client ws)."""
    accepted: trio.MemoryReceiveChannel
    send, accepted = trio.open_memory_channel(1)

    async def handler(transport: WsTransport, _token, _request) -> None:
        done = trio.Event()
        await send.send((transport, done))
        await done.wait()

    ports = await nursery.start(
        lambda task_status: serve_websockets(
            handler, host="127.0.0.1", port=0, ssl_context=None, max_message_size=65536, allowed_origins=(),
            allow_query_token=False, handler_nursery=nursery, tcp_user_timeout_ms=30_000,
            on_refused=limits_refused or (lambda reason: None), admission=admission, task_status=task_status,
        )
    )
    client = await connect_websocket_url(nursery, f"ws://127.0.0.1:{ports[0]}/ws")
    transport, done = await accepted.receive()
    return transport, client, done, ports[0]


def test_the_installed_libraries_pass_the_check():
    assert _compat.problems() == []


def test_a_wrong_version_or_a_missing_name_is_a_clear_start_up_error(monkeypatch):
    found = _compat.problems({"trio-websocket": "0.13.0", "wsproto": "1.3.2"})
    assert found and "trio-websocket 0.13.0 is installed" in found[0] and "pip install 'trio-websocket==0.12.2'" in found[0]
    monkeypatch.delattr(_compat.WebSocketConnection, "_abort_web_socket")
    with pytest.raises(_compat.TransportCompatError) as err:
        _compat.check()
    assert "WebSocketConnection._abort_web_socket() is gone" in str(err.value)


def test_the_check_runs_at_import_so_the_server_refuses_to_start():
    code = (
        "import trio_websocket; del trio_websocket.WebSocketConnection._close_stream\n"
        "import wsserver.transport\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "TransportCompatError" in done.stderr and "_close_stream() is gone" in done.stderr


async def test_hook_write_frames_vectored_under_the_stream_lock(nursery):
    transport, client, done, _ = await _pair(nursery)
    big = b"x" * 300_000  # more than the socket takes at once: the write waits for writability
    frames = [text_frame(b'"a"'), text_frame(b'"' + big + b'"'), text_frame(b'"c"')]
    async with trio.open_nursery() as inner:
        inner.start_soon(transport.send_frames, frames)
        got = [await client.get_message() for _ in range(3)]
    assert got[0] == '"a"' and len(got[1]) == 300_002 and got[2] == '"c"'
    done.set()


async def test_hook_write_frames_on_a_closed_peer_raises_connection_closed(nursery):
    transport, client, done, _ = await _pair(nursery)
    await client.aclose()
    with pytest.raises(ConnectionClosed):
        with trio.fail_after(WAIT):
            for _ in range(1000):  # the reset shows up on a later write
                await transport.send_frames([text_frame(b'"x"' * 1000)])
                await trio.sleep(0.001)
    done.set()


async def test_hook_send_ping_notes_the_pong(nursery):
    transport, client, done, _ = await _pair(nursery)
    waiter = PongWaiter(trio.current_time())
    await transport.send_ping(waiter)
    with trio.fail_after(WAIT):
        while waiter.received is None:
            await trio.sleep(0.01)
    assert waiter.received >= waiter.sent
    done.set()


async def test_hook_close_stream_cuts_the_tcp_connection_without_a_handshake(nursery):
    transport, client, done, _ = await _pair(nursery)
    await transport.abort()
    with pytest.raises(ConnectionClosed) as closed:
        with trio.fail_after(WAIT):
            await client.get_message()
    assert closed.value.reason.code == 1006  # no close frame came
    done.set()


async def test_hook_release_handshake_keeps_the_connection_working(nursery):
    transport, client, done, _ = await _pair(nursery)
    ws = transport._ws
    assert ws._wsproto.handshake is _compat._FINISHED_HANDSHAKE  # released at the upgrade
    await client.send_message("hello")
    assert await transport.receive() == "hello"
    await transport.send_frames([text_frame(b'"back"')])
    assert await client.get_message() == '"back"'
    done.set()


async def test_hook_refuse_closes_a_refused_upgrade_at_once(nursery):
    _transport, _client, done, port = await _pair(nursery)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        answer = b""
        while chunk := await trio.to_thread.run_sync(sock.recv, 4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404")  # and recv() saw EOF: the server closed it
    done.set()


async def test_hook_connection_answers_a_protocol_error_with_a_close_frame(nursery):
    _transport, _client, done, port = await _pair(nursery)
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    await sock.send_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    data = b""
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in data:
            data += await sock.receive_some(4096)
        await sock.send_all(bytes([0x83, 0x80, 1, 2, 3, 4]))  # reserved opcode 3, masked, empty
        data = b""
        while len(data) < 4:
            chunk = await sock.receive_some(4096)
            assert chunk, "closed without a Close frame"
            data += chunk
    assert data[0] == 0x88 and int.from_bytes(data[2:4], "big") == 1002
    await sock.aclose()
    done.set()


async def test_hook_supervised_server_counts_handshakes_and_frees_a_client_gone_mid_handshake(nursery):
    admission = Admission(AdmissionLimits(100, 100, 100, 1000.0, max_handshakes=10))
    _transport, _client, done, port = await _pair(nursery, admission=admission)
    silent = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(WAIT):
        while admission.handshaking < 1:
            await trio.sleep(0.01)
    await silent.aclose()  # gone before its upgrade request
    with trio.fail_after(HANDSHAKE_TIMEOUT / 2):  # freed at once, not at the handshake deadline
        while admission.handshaking:
            await trio.sleep(0.01)
    done.set()


async def test_a_failing_connection_never_takes_the_listener_down(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path)
    for _ in range(5):  # resets mid-handshake
        with socket.create_connection(("127.0.0.1", srv.info.port)) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client = await srv.connect()
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)
    await client.aclose()
