"""`wss://` served directly (from source): a trustme certificate works, TLS 1.0/1.1 are refused by
the server, and unusable certificate/key files stop `wsserver serve` with one clear line."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import warnings

import pytest

from tests.support import ServerProcess, make_token
from tests.wsserver_tls.wire import STEP_TIMEOUT, ServerCert, receive, subscribed


@pytest.fixture
def cert(tmp_path):
    return ServerCert(tmp_path / "tls")


@pytest.fixture
def tls_server(tmp_path, cert):
    env = {"WSSERVER_TLS_CERT": str(cert.cert), "WSSERVER_TLS_KEY": str(cert.key)}
    with ServerProcess(tmp_path / "data", env=env) as server:
        yield server


def test_wss_auth_subscribe_and_receive_a_published_event(tls_server, cert):
    url = f"wss://127.0.0.1:{tls_server.port}/ws"
    with subscribed(url, make_token("alice"), "chat.tls", cert.client_context()) as ws:
        assert ws.protocol.state.name == "OPEN"
        published = tls_server.publish("chat.tls", "message.new", {"text": "over tls"})
        event = receive(ws)
        assert event["type"] == "message.new"
        assert event["payload"] == {"text": "over tls"}
        assert event["seq"] == published["seq"] == 1


def test_plain_ws_is_not_served_on_the_tls_port(tls_server):
    """A plain upgrade request on the TLS port gets no `101` (the server closes it or stays silent)."""
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=STEP_TIMEOUT) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        sock.settimeout(3)  # a plain server would answer 101 within milliseconds
        try:
            answer = sock.recv(1024)
        except (TimeoutError, ConnectionError):
            answer = b""
    assert b" 101 " not in answer, answer


def _client_context(cert: ServerCert, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers exactly ``version``; SECLEVEL=0 lets it offer TLS 1.0/1.1 at all."""
    ctx = cert.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1/TLSv1_1 are deprecated
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def _handshake(port: int, ctx: ssl.SSLContext, timeout: float = STEP_TIMEOUT) -> str:
    """Handshakes with the server on ``port``; returns the negotiated version or raises ssl.SSLError
    (or TimeoutError when the server answers nothing within ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            return tls.version()


def _handshake_with_permissive_server(client: ssl.SSLContext, cert: ServerCert) -> str:
    """Handshakes in memory (two MemoryBIO pairs, no sockets) with a server allowing TLS 1.0+."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    server.load_cert_chain(cert.cert, cert.key)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {c: False, s: False}
    for _ in range(20):
        for end in (c, s):
            if not done[end]:
                try:
                    end.do_handshake()
                    done[end] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return c.version()
    raise AssertionError("in-memory handshake did not finish")


OLD = [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1]


@pytest.mark.parametrize("version", OLD, ids=["tls1.0", "tls1.1"])
def test_the_old_tls_client_works_against_a_permissive_server(cert, version):
    """Control: this machine's OpenSSL lets the test client speak TLS 1.0/1.1 ..."""
    assert _handshake_with_permissive_server(_client_context(cert, version), cert) in ("TLSv1", "TLSv1.1")


@pytest.mark.parametrize("version", OLD, ids=["tls1.0", "tls1.1"])
def test_old_tls_versions_are_refused_by_the_server(tls_server, cert, version):
    """... so when the very same client fails against wsserver, the refusal is the server's.

    The server sends no alert and (trio-websocket) holds the failed connection open until its 10 s
    handshake timeout, so "refused" is an SSL error or no ServerHello within 3 s; the TLS 1.2/1.3
    test below shows the same server completing handshakes it accepts.
    """
    with pytest.raises((ssl.SSLError, TimeoutError)) as refused:
        _handshake(tls_server.port, _client_context(cert, version), timeout=3)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value), refused.value


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_modern_tls_versions_are_accepted_with_the_same_client_settings(tls_server, cert, version):
    expected = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert _handshake(tls_server.port, _client_context(cert, version)) == expected


def _serve_fails(tmp_path, cert_path, key_path) -> tuple[int, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "wsserver", "serve", "--port", "0", "--api-port", "0",
         "--data-dir", str(tmp_path / "data"), "--tls-cert", str(cert_path), "--tls-key", str(key_path)],
        env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    return proc.returncode, proc.stderr


def _assert_one_clear_line(rc: int, stderr: str, *words: str) -> None:
    assert rc != 0, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_certificate_file_stops_serve_with_one_line(tmp_path, cert):
    rc, stderr = _serve_fails(tmp_path, tmp_path / "nope.pem", cert.key)
    _assert_one_clear_line(rc, stderr, "tls_cert", "nope.pem")


def test_non_pem_certificate_stops_serve_with_one_line(tmp_path, cert):
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not a certificate\n")
    rc, stderr = _serve_fails(tmp_path, junk, cert.key)
    _assert_one_clear_line(rc, stderr, "tls")


def test_key_that_does_not_match_the_certificate_stops_serve_with_one_line(tmp_path, cert):
    other = ServerCert(tmp_path / "other")
    rc, stderr = _serve_fails(tmp_path, cert.cert, other.key)
    _assert_one_clear_line(rc, stderr, "tls")
