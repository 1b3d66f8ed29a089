"""Smoke tests of the built executable, not the source tree: copied alone into a directory outside
the repo and run with a clean environment, as an operator would on a fresh VM."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed

from tests.binary.conftest import BinaryServer, clean_env
from tests.wsserver_tls.wire import receive, subscribed

pytestmark = pytest.mark.binary


def _token(server: BinaryServer, sub: str) -> str:
    """Minted by the binary's own `token` command from ./data/dev-credentials.json."""
    minted = server.run("token", "--sub", sub, "--channels", "chat.*", "--publish", "chat.*")
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def test_version_reports_the_frozen_build(installed, vm_dir):
    proc = subprocess.run([str(installed), "--version"], cwd=vm_dir, env=clean_env(vm_dir), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # argparse wraps --version output at 80 columns
    assert text.startswith("wsserver "), text
    assert "pyinstaller binary" in text and ", built " in text and " from " in text, text


def test_help_lists_every_command(installed, vm_dir):
    proc = subprocess.run([str(installed), "--help"], cwd=vm_dir, env=clean_env(vm_dir), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for command in ("serve", "token", "admin", "chaos-proxy"):
        assert command in proc.stdout


def test_zero_config_serve_prints_and_keeps_dev_credentials(wss_server):
    credentials = wss_server.credentials()
    log = wss_server.log()
    assert credentials["api_key"] in log and credentials["jwt_secret"] in log
    assert "pyinstaller binary" in log  # `serve` logs the version text at start
    assert wss_server.ws_url.startswith("wss://") and wss_server.ws_url in log
    assert (wss_server.workdir / "data" / "events.sqlite3").exists()


def test_a_client_receives_a_published_event_over_wss(wss_server, cert):
    with subscribed(wss_server.ws_url, _token(wss_server, "alice"), "chat.lobby", cert.client_context()) as ws:
        published = wss_server.publish("chat.lobby", "message.new", {"text": "hello from the binary"})
        event = receive(ws)
        assert event["type"] == "message.new"
        assert event["payload"] == {"text": "hello from the binary"}
        assert (event["channel"], event["seq"], event["epoch"]) == ("chat.lobby", published["seq"], published["epoch"])


def test_sigterm_drains_clients_with_1001_and_exits_0(wss_server, cert):
    with subscribed(wss_server.ws_url, _token(wss_server, "bob"), "chat.drain", cert.client_context()) as ws:
        assert wss_server.terminate() == 0, wss_server.log()
        with pytest.raises(ConnectionClosed) as closed:
            receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
    assert "draining" in wss_server.log()


class Tmux:
    """A private tmux server (`-L`) running one command in a fixed-size window."""

    def __init__(self, command: list[str], cwd, env: dict[str, str]) -> None:
        self.socket = f"wsbin-{uuid.uuid4().hex[:8]}"
        self.env = env
        self._tmux("-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "40", "-c", str(cwd),
                   " ".join(shlex_quote(a) for a in command))

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, check=True, capture_output=True,
                              text=True, timeout=10).stdout

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self._tmux("capture-pane", "-p")
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not on screen after {timeout}s; the screen was:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=10)


def shlex_quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (CI installs it)")
def test_admin_console_starts_in_a_terminal_and_shows_the_connection(wss_server, cert, installed):
    with subscribed(wss_server.ws_url, _token(wss_server, "carol"), "chat.admin", cert.client_context()):
        # No --api-key: like serve, admin finds the key in ./data/dev-credentials.json.
        tmux = Tmux([str(installed), "admin", "--url", wss_server.api_url, "--interval", "0.25"], wss_server.workdir,
                    clean_env(wss_server.workdir, TERM="xterm-256color"))
        try:
            tmux.wait_for("carol")
        finally:
            tmux.kill()


def test_chaos_proxy_is_inside(installed, vm_dir):
    """The fault-injecting proxy ships in the same file (its own --help lists its options)."""
    outputs = []
    for args in (["chaos-proxy", "--help"], ["chaos-proxy", "--", "--help"]):  # the CLI passes the rest through
        proc = subprocess.run([str(installed), *args], cwd=vm_dir, env=clean_env(vm_dir), capture_output=True,
                              text=True, timeout=30)
        outputs.append(proc.stdout + proc.stderr)
    assert any("wsserver chaos-proxy" in out and "--listen" in out for out in outputs), outputs


@pytest.mark.redis
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (CI installs it)")
def test_two_nodes_share_redis_and_a_drained_client_resumes_on_the_other(installed, tmp_path, cert):
    """No sticky sessions: a client drained off node B reconnects to node A with lastSeq and gets
    exactly the events it missed, because both nodes read the one log in Redis."""
    from tests.redis.servers import RedisServer

    redis = RedisServer(tmp_path / "redis").start()
    nodes: list[BinaryServer] = []
    try:
        shared = {"WSSERVER_REDIS_URL": redis.url, "WSSERVER_API_KEY": "binary-test-api-key",
                  "WSSERVER_JWT_SECRET": "binary-test-jwt-secret-0123456789"}
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            nodes.append(BinaryServer(installed, tmp_path / name, cert, env={**shared, "WSSERVER_NODE_ID": name}))
            nodes[-1].start()
        a, b = nodes
        token = _token(a, "dave")
        with subscribed(b.ws_url, token, "chat.multi", cert.client_context()) as ws:
            first = a.publish("chat.multi", "message.new", {"n": 1})  # published on A, delivered by B
            event = receive(ws)
            assert (event["seq"], event["payload"]) == (first["seq"], {"n": 1})
            assert b.terminate() == 0, b.log()
            with pytest.raises(ConnectionClosed) as closed:
                receive(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        missed = [a.publish("chat.multi", "message.new", {"n": n})["seq"] for n in (2, 3)]
        with subscribed(a.ws_url, token, "chat.multi", cert.client_context(), last_seq=event["seq"],
                        epoch=event["epoch"]) as ws:
            replayed = [receive(ws) for _ in missed]
        assert [e["seq"] for e in replayed] == missed
        assert [e["payload"]["n"] for e in replayed] == [2, 3]
    finally:
        for node in nodes:
            node.kill()
        redis.stop()
