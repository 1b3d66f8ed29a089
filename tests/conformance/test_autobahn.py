"""RFC 6455 conformance by Autobahn|Testsuite: cases 1–7, 9, 10 against an echo app on the
server's own WebSocket stack, and every echo-free case against the real `wsserver serve`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conformance.autobahn import CASES, ROOT, Run, echo_free_cases, judge, run_fuzzingclient
from tests.support import ServerProcess, free_port

pytestmark = pytest.mark.conformance

#: 9.x sends messages up to 16 MiB: the echo app runs with the largest `max_message_size`
#: the server's configuration accepts (the default is 64 KiB).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: Representative echo-free cases: if Autobahn's report format changed and the selection came
#: out empty or thin, the real-server run would prove nothing.
MUST_BE_ECHO_FREE = {"2.1", "2.10", "3.1", "4.1.1", "4.2.1", "5.1", "5.9", "6.3.1", "6.4.1", "7.3.1", "7.5.1", "7.7.1", "7.9.1"}


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"echo app exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"echo app did not listen within {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def echo_run(tmp_path_factory) -> Run:
    """The full case set against tests/conformance/echo_app.py (the server's transport)."""
    port = free_port()
    log = tmp_path_factory.mktemp("echo") / "echo_app.log"
    env = {
        **__import__("os").environ,
        "WSSERVER_HOST": "127.0.0.1",
        "WSSERVER_PORT": str(port),
        "WSSERVER_MAX_MESSAGE_SIZE": str(MAX_MESSAGE_SIZE),
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.conformance.echo_app"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, log)
        run = run_fuzzingclient("transport-echo", f"ws://127.0.0.1:{port}/ws", CASES)
        assert proc.poll() is None, f"echo app died during the run:\n{log.read_text()}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "unexpected error" not in log.read_text(), log.read_text()
    return run


def test_server_transport_passes_autobahn_cases_1_to_10(echo_run):
    problems, counts = judge(echo_run)
    assert not problems, "\n".join(problems)
    groups = {case.split(".")[0] for case in echo_run.results}
    assert groups == {"1", "2", "3", "4", "5", "6", "7", "9", "10"}, groups
    assert counts["FAILED"] == 0 and counts["UNIMPLEMENTED"] == 0
    assert len(echo_run.results) > 290  # Autobahn 1–7, 9, 10 hold ~300 cases


def test_real_server_fails_protocol_violations_as_rfc6455_requires(echo_run, tmp_path):
    """The cases whose verdict needs no echo — pings, reserved bits and opcodes, fragmented or
    oversized control frames, invalid UTF-8, close payloads and codes — against the product."""
    cases = echo_free_cases(echo_run)
    assert MUST_BE_ECHO_FREE <= set(cases), MUST_BE_ECHO_FREE - set(cases)
    assert len(cases) > 100, len(cases)
    with ServerProcess(tmp_path / "data") as server:
        run = run_fuzzingclient("wsserver", server.ws_url, cases, exclude=[])
        assert server.proc.poll() is None, server.log()
        deadline = time.monotonic() + 10
        while (stats := server.api("GET", "/api/v1/stats")[1])["nodes"][0]["connections"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats["nodes"][0]["connections"] == 0, stats
        status, _ = server.api("GET", "/healthz", key=None)
        assert status == 200
    problems, counts = judge(run)
    assert not problems, "\n".join(problems)
    assert sorted(run.results) == sorted(cases)
    assert "Traceback" not in server.log() and "unexpected error" not in server.log(), server.log()[-5000:]
