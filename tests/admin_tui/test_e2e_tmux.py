"""End to end: a real server, real WebSocket clients (one reading, one stalled), and
`wsserver admin` in a real terminal (tmux). Reads the screen, and disconnects the stalled
client from the console with keys; that client must see the chosen close code."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from admin_tui.dialogs import CLOSE_CHOICES
from tests.support import API_KEY, ServerProcess, make_token

pytestmark = pytest.mark.slow  # needs tmux (.ci/run installs it)

CHANNEL = "chat.e2e"
CODE = 4003
EVENTS = 600
PAYLOAD = "x" * 8000  # 600 × 8 KB: far more than the stalled client's socket buffers hold


class Tmux:
    """One private tmux server (its own socket) running one command in a fixed-size window."""

    def __init__(self, command: list[str], width: int = 160, height: int = 40) -> None:
        self.socket = f"wsadmin-{uuid.uuid4().hex[:8]}"
        self._run("-f", "/dev/null", "new-session", "-d", "-x", str(width), "-y", str(height),
                  " ".join(_quote(a) for a in command))

    def _run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=10).stdout

    def screen(self) -> str:
        return self._run("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self._run("send-keys", *keys)

    def literal(self, text: str) -> None:
        self._run("send-keys", "-l", text)

    def wait_for(self, condition: Callable[[str], object], what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if condition(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def _subscribe(ws: ClientConnection, user: str) -> None:
    ws.send(json.dumps({"type": "auth", "id": "a", "timestamp": 0, "payload": {"token": make_token(user)}}))
    assert json.loads(ws.recv(timeout=10))["type"] == "auth_ok"
    ws.send(json.dumps({"type": "subscribe", "id": "s", "timestamp": 0, "payload": {"channel": CHANNEL, "lastSeq": 0}}))
    assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"


def _stalled_client(url: str) -> ClientConnection:
    """A client that stops reading: a tiny receive buffer, and websockets stops reading the
    socket once a few frames wait unread (max_queue)."""
    host, port = re.match(r"ws://([^:/]+):(\d+)", url).groups()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    return connect(url, sock=sock, max_queue=4, open_timeout=10)


def _lag_of(screen: str, user: str) -> int | None:
    for line in screen.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1] == user:
            return int(fields[2])
    return None


def test_console_shows_clients_lag_and_disconnects(tmp_path) -> None:
    server = ServerProcess(tmp_path / "data", env={"WSSERVER_SEND_QUEUE_SIZE": "100000", "WSSERVER_SEND_QUEUE_BYTES": "1073741824"})
    tmux: Tmux | None = None
    stop = threading.Event()
    received: list[int] = []

    with server, connect(server.ws_url, open_timeout=10) as fast, _stalled_client(server.ws_url) as slow:
        try:
            _subscribe(fast, "fastuser")
            _subscribe(slow, "slowuser")

            def read_fast() -> None:
                while not stop.is_set():
                    try:
                        received.append(json.loads(fast.recv(timeout=0.2))["seq"])
                    except TimeoutError:
                        continue
                    except ConnectionClosed:
                        return

            reader = threading.Thread(target=read_fast, name="fast-reader")
            reader.start()
            try:
                tmux = Tmux([sys.executable, "-m", "wsserver", "admin", "--url", server.api_url,
                             "--api-key", API_KEY, "--interval", "0.25"])
                tmux.wait_for(lambda s: "fastuser" in s and "slowuser" in s, "both clients in the table")

                for i in range(EVENTS):
                    server.publish(CHANNEL, data={"i": i, "pad": PAYLOAD})
                screen = tmux.wait_for(lambda s: (_lag_of(s, "slowuser") or 0) >= 100, "the stalled client's lag")
                assert (_lag_of(screen, "fastuser") or 0) < (_lag_of(screen, "slowuser") or 0)
                assert "slowuser" in screen.splitlines()[next(
                    i for i, line in enumerate(screen.splitlines()) if "Connection" in line and "Max lag" in line) + 1]

                # Disconnect the stalled client from the console, with keys only.
                tmux.literal("/")
                tmux.wait_for(lambda s: "typing a filter" in s, "the filter input")
                tmux.literal("user:slowuser")
                tmux.keys("Enter")
                tmux.wait_for(lambda s: "fastuser" not in s and "1 of 2 shown" in s, "the filtered table")
                tmux.keys("d")
                tmux.wait_for(lambda s: "with close code" in s, "the close code dialog")
                codes = [code for code, _, _ in CLOSE_CHOICES]
                for _ in range(codes.index(CODE)):
                    tmux.keys("Down")
                tmux.keys("Enter")
                tmux.wait_for(lambda s: f"with {CODE}" in s and "Disconnect (y)" in s, "the confirmation")
                tmux.keys("y")

                # The stalled client reads what it was sent, then the close frame with our code.
                deadline = time.monotonic() + 30
                with pytest.raises(ConnectionClosed) as closed:
                    while time.monotonic() < deadline:
                        slow.recv(timeout=5)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == CODE
                tmux.wait_for(lambda s: "0 of 1 shown" in s and _lag_of(s, "slowuser") is None,
                              "the closed client leaving the table")
                tmux.wait_for(lambda s: len(received) == EVENTS, "the reading client to get every event")
            finally:
                stop.set()
                reader.join(timeout=10)
        finally:
            if tmux is not None:
                tmux.kill()
