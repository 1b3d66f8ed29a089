"""Test support shared by every test tier: free ports, token minting, and a real
`wsserver serve` subprocess on free ports with its own data directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt

#: Passed as httpx's ``verify`` for the plain-http API: httpx would otherwise build a fresh TLS
#: context (~70 ms) for every client a test creates.
PLAIN_HTTP = ssl.create_default_context()

SECRET = "test-secret-" + "x" * 32
API_KEY = "test-api-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(sub: str = "alice", *, channels=("*",), publish=("*",), ttl: float = 600, secret: str = SECRET,
               now: float | None = None, **extra: Any) -> str:
    issued = time.time() if now is None else now
    claims = {"sub": sub, "exp": int(issued + ttl), "channels": list(channels), "publish": list(publish), **extra}
    return jwt.encode(claims, secret, algorithm="HS256")


class ServerProcess:
    """`python -m wsserver serve` in a subprocess, on free ports, with a private data dir.

    Use as a context manager; ``stop()`` sends SIGTERM and returns the exit code.
    ``kill()`` sends SIGKILL (crash). ``restart()`` starts it again on the same ports and data.
    """

    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None,
                 executable: list[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.api_port = free_port()
        self.extra_env = env or {}
        self.args = args or []
        self.executable = executable or [sys.executable, "-m", "wsserver"]
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            WSSERVER_HOST="127.0.0.1",
            WSSERVER_PORT=str(self.port),
            WSSERVER_API_HOST="127.0.0.1",
            WSSERVER_API_PORT=str(self.api_port),
            WSSERVER_API_KEY=API_KEY,
            WSSERVER_JWT_SECRET=SECRET,
            WSSERVER_DATA_DIR=str(self.data_dir),
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.executable, "serve", *self.args], env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def api(self, method: str, path: str, body: Any = None, *, key: str | None = API_KEY) -> tuple[int, Any]:
        """Calls the HTTP API; returns (status, parsed JSON or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.api_url}{path}", method=method, data=data)
        if key is not None:
            req.add_header("Authorization", f"Bearer {key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        with urllib.request.urlopen(f"{self.api_url}/metrics", timeout=10) as r:
            return r.read().decode()

    def publish(self, channel: str, event: str = "message.new", data: dict | None = None, id: str | None = None) -> dict:
        body: dict[str, Any] = {"channel": channel, "event": event, "data": data or {}}
        if id is not None:
            body["id"] = id
        status, answer = self.api("POST", "/api/v1/publish", body)
        assert status == 200, (status, answer)
        return answer

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()
