"""The bench's process plumbing: the servers under test (ours, the peers, redis-server) as
subprocesses on free ports, their CPU time, and the load-generator processes (bench/loadgen.py)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

from common import API_KEY, ServerProcess, env_for_bench, make_token  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.redis.servers import RedisServer
from tests.support import free_port

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
NODE_DIR = PEERS / "node"
VENV = BENCH / ".peers-venv"
VENV_PY = VENV / "bin" / "python"
TICK = os.sysconf("SC_CLK_TCK")

#: name → (protocol dialect, command builder given the port)
PEER_COMMANDS = {
    "trio-websocket": ("plain", lambda port: [sys.executable, str(PEERS / "trio_ws_server.py"), str(port)]),
    "websockets": ("plain", lambda port: [str(VENV_PY), str(PEERS / "websockets_server.py"), str(port)]),
    "node-ws": ("plain", lambda port: ["node", str(NODE_DIR / "ws_server.js"), str(port)]),
    "socket.io": ("socketio", lambda port: ["node", str(NODE_DIR / "socketio_server.js"), str(port)]),
    "python-socketio": ("socketio", lambda port: [str(VENV_PY), str(PEERS / "python_socketio_server.py"), str(port)]),
}


def ensure_peers() -> None:
    """Installs the pinned peers (bench-local venv and node_modules) when missing."""
    if not VENV_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    marker = VENV / ".installed"
    reqs = (PEERS / "requirements.txt").read_text()
    if not marker.exists() or marker.read_text() != reqs:
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", "-r", str(PEERS / "requirements.txt")], check=True)
        marker.write_text(reqs)
    if not (NODE_DIR / "node_modules" / "socket.io").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True)


def cpu_of(pid: int) -> float:
    """User+system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Target:
    """A server under test: where to connect, in which dialect, and its pid for CPU/RSS."""

    def __init__(self, name: str, kind: str, port: int, pid: int, stop, extra: dict | None = None) -> None:
        self.name, self.kind, self.port, self.pid, self._stop = name, kind, port, pid, stop
        self.host = "127.0.0.1"
        self.extra = extra or {}

    def stop(self) -> None:
        self._stop()


def start_wsserver(workdir: Path, *, name: str = "wsserver", redis_url: str | None = None,
                   executable: list[str] | None = None, **env: str) -> Target:
    settings = dict(  # noqa: C408 - environment names read best as keywords
                    WSSERVER_HEARTBEAT_INTERVAL="600", WSSERVER_SEND_QUEUE_SIZE="8192",
                    WSSERVER_HISTORY_MAX_EVENTS="20000",
                    # the bench drives thousands of connections and frames from one address
                    WSSERVER_CONNECTION_RATE="1000000", WSSERVER_RATE_LIMIT_FRAMES="1000000",
                    WSSERVER_RATE_LIMIT_BYTES="1000000000", WSSERVER_MAX_CONNECTIONS_PER_IP="1000000",
                    WSSERVER_MAX_CONNECTIONS_PER_USER="1000000", WSSERVER_MAX_HANDSHAKES="1000000")
    settings.update(env)
    if redis_url:
        settings["WSSERVER_REDIS_URL"] = redis_url
    server = ServerProcess(Path(tempfile.mkdtemp(dir=workdir)) / "data", env=env_for_bench(**settings),
                           executable=executable).start()
    assert server.proc is not None
    return Target(name, "wsserver", server.port, server.proc.pid, server.stop, {"server": server})


def start_peer(name: str, workdir: Path) -> Target:
    kind, command = PEER_COMMANDS[name]
    port = free_port()
    log = workdir / f"{name}-{port}.log"
    with open(log, "ab") as stderr:
        proc = subprocess.Popen(command(port), stdout=subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode() if ready else ""
    if "READY" not in line:
        proc.kill()
        raise RuntimeError(f"peer {name} did not start: {line!r} (see {log})")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    return Target(name, kind, port, proc.pid, stop)


def redis_server(workdir: Path) -> RedisServer:
    """A private redis-server on a free port (never the machine's 6379), no persistence."""
    return RedisServer(workdir / f"redis-{free_port()}").start()


class LoadProcess:
    """One bench/loadgen.py process; ``call`` sends a command and reads its (last) answer."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "loadgen.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def send(self, cmd: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 300) -> dict:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("load generator did not answer")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited with {self.proc.wait()}")
        return json.loads(line)

    def call(self, cmd: dict, timeout: float = 300) -> dict:
        self.send(cmd)
        return self.read(timeout)

    def close(self) -> None:
        try:
            self.call({"op": "close"}, timeout=30)
        except (OSError, RuntimeError, TimeoutError, ValueError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def token(ttl: float = 7200) -> str:
    return make_token("bench", channels=["*"], publish=["*"], ttl=ttl)
