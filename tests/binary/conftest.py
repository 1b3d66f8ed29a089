"""Binary tier fixtures: build `dist/wsserver` once per session (or take `WSSERVER_BINARY`), copy it
into a directory outside the repo, and run it there with a clean environment (no PYTHONPATH)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port
from tests.wsserver_tls.wire import ServerCert

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 900.0
START_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def built_binary() -> Path:
    """The built executable: `WSSERVER_BINARY`, or `scripts/build-binary.sh` run once per session."""
    given = os.environ.get("WSSERVER_BINARY")
    if given:
        return Path(given).resolve()
    started = time.monotonic()
    proc = subprocess.run([str(REPO / "scripts" / "build-binary.sh")], cwd=REPO, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"binary build failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    print(f"\nbinary built in {time.monotonic() - started:.0f}s: {proc.stdout.strip().splitlines()[-1]}")
    return REPO / "dist" / "wsserver"


@pytest.fixture(scope="session")
def installed(built_binary, tmp_path_factory) -> Path:
    """The binary copied alone into a fresh directory outside the repo, as an operator would."""
    target = tmp_path_factory.mktemp("vm") / "wsserver"
    assert REPO not in target.parents
    shutil.copy2(built_binary, target)
    return target


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: no PYTHONPATH, no virtualenv, nothing from the repo."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


class BinaryServer:
    """`./wsserver serve` run from its own directory with zero configuration beyond ports and TLS."""

    def __init__(self, binary: Path, workdir: Path, cert: ServerCert | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.extra_env = env or {}
        self.workdir = workdir
        self.port = free_port()
        self.api_port = free_port()
        self.cert = cert
        self.log_path = workdir / "serve.log"
        self.proc: subprocess.Popen | None = None

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.cert else 'ws'}://127.0.0.1:{self.port}/ws"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        extra = {"WSSERVER_HOST": "127.0.0.1", "WSSERVER_PORT": str(self.port), "WSSERVER_API_PORT": str(self.api_port)}
        if self.cert:
            extra |= {"WSSERVER_TLS_CERT": str(self.cert.cert), "WSSERVER_TLS_KEY": str(self.cert.key)}
        return clean_env(self.workdir, **extra, **self.extra_env)

    def start(self) -> BinaryServer:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(self.binary), "serve"], cwd=self.workdir, env=self.env(),
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise AssertionError(f"serve not healthy after {START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def credentials(self) -> dict[str, str]:
        if "WSSERVER_API_KEY" in self.extra_env:
            return {"api_key": self.extra_env["WSSERVER_API_KEY"], "jwt_secret": self.extra_env["WSSERVER_JWT_SECRET"]}
        return json.loads((self.workdir / "data" / "dev-credentials.json").read_text())

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """Another command of the same binary, in the same directory (so it finds ./data)."""
        return subprocess.run([str(self.binary), *args], cwd=self.workdir, env=clean_env(self.workdir, **self.extra_env),
                              capture_output=True, text=True, timeout=30)

    def publish(self, channel: str, event: str, data: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"channel": channel, "event": event, "data": data}).encode()
        request = urllib.request.Request(f"{self.api_url}/api/v1/publish", data=body, method="POST", headers={
            "Authorization": f"Bearer {self.credentials()['api_key']}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def vm_dir(tmp_path) -> Path:
    """A fresh working directory (the VM's service directory), outside the repo."""
    workdir = tmp_path / "srv"
    workdir.mkdir()
    assert REPO not in workdir.parents
    return workdir


@pytest.fixture
def cert(tmp_path) -> ServerCert:
    return ServerCert(tmp_path / "tls")


@pytest.fixture
def wss_server(installed, vm_dir, cert):
    server = BinaryServer(installed, vm_dir, cert).start()
    try:
        yield server
    finally:
        server.kill()
