"""The `wsserver` command as a user meets it: subprocesses, real signals, real clients."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid

import pytest
from websockets.sync.client import connect

from tests.support import API_KEY, SECRET, ServerProcess, free_port, make_token
from wsserver import __version__

WSSERVER = [sys.executable, "-m", "wsserver"]
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def run(args, **kw):
    return subprocess.run([*WSSERVER, *args], capture_output=True, text=True, timeout=60, **kw)


def frame(type_, payload=None):
    return json.dumps({"type": type_, "id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "payload": payload or {}})


def test_version():
    out = run(["--version"])
    assert out.returncode == 0 and out.stdout.startswith(f"wsserver {__version__} (")


def test_token_command_uses_the_configured_secret():
    out = run(["token", "--sub", "alice", "--channels", "chat.*,news", "--ttl", "15m"], env={**os.environ, "WSSERVER_JWT_SECRET": SECRET})
    assert out.returncode == 0, out.stderr
    import jwt

    claims = jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["channels"] == ["chat.*", "news"] and claims["publish"] == []
    assert 890 <= claims["exp"] - time.time() <= 901


def test_configuration_errors_are_one_line_and_exit_2(tmp_path):
    for env, needle in [({"WSSERVER_PORT": "http"}, "port"), ({"WSSERVER_HEARTBEAT_TIMEOUT": "0"}, "heartbeat_timeout")]:
        out = run(["serve"], env={**os.environ, **env, "WSSERVER_DATA_DIR": str(tmp_path)})
        assert out.returncode == 2
        assert needle in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = run(["serve", "--config", str(tmp_path / "none.toml")])
    assert out.returncode == 2 and "not found" in out.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = run(["serve", "--host", "127.0.0.1", "--port", str(port), "--api-port", str(free_port()), "--data-dir", str(tmp_path)])
    assert out.returncode == 1 and "cannot start" in out.stderr and "Traceback" not in out.stderr


def test_zero_config_serve_prints_dev_credentials_and_they_work(tmp_path):
    port, api = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSERVER_")}
    env.update(WSSERVER_PORT=str(port), WSSERVER_API_PORT=str(api))  # only to avoid fixed ports in CI
    proc = subprocess.Popen([*WSSERVER, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
        banner = "".join(lines)
        assert f"ws://127.0.0.1:{port}/ws" in banner and "Development credentials" in banner
        creds_file = tmp_path / "data" / "dev-credentials.json"
        creds = json.loads(creds_file.read_text())
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        assert creds["api_key"] in banner
        token = subprocess.run([*WSSERVER, "token", "--sub", "dev", "--channels", "chat.*"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=30).stdout.strip()
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as ws:
            ws.send(frame("auth", {"token": token}))
            assert json.loads(ws.recv(timeout=5))["type"] == "auth_ok"
        assert (tmp_path / "data" / "events.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    # the second start reuses the same credentials
    assert json.loads(creds_file.read_text()) == creds


def test_sigterm_drains_clients_with_1001_and_exits_0(tmp_path):
    with ServerProcess(tmp_path / "data") as server, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.ws_url, open_timeout=5)) for _ in range(3)]
        for ws in clients:
            ws.send(frame("auth", {"token": make_token()}))
            assert json.loads(ws.recv(timeout=5))["type"] == "auth_ok"
        assert server.stop() == 0
        for ws in clients:
            with pytest.raises(Exception):
                ws.recv(timeout=5)
            assert ws.close_code == 1001
        log = server.log()
    assert "draining: closing 3 connections with 1001" in log
    assert "code=1001" in log


def test_logs_have_one_line_per_connection_and_never_a_token(tmp_path):
    with ServerProcess(tmp_path / "data", env={"WSSERVER_ALLOW_QUERY_TOKEN": "true"}) as server:
        token = make_token("carol")
        with connect(f"{server.ws_url}?token={token}", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "auth_ok"
            ws.send(frame("auth", {"token": make_token("carol", ttl=100)}))
            ws.recv(timeout=5)
        with connect(server.ws_url, open_timeout=5) as ws:
            ws.send(frame("auth", {"token": make_token("carol", secret="x" * 40)}))
            ws.recv(timeout=5)
        server.api("GET", "/api/v1/stats")
        time.sleep(0.2)
    log = server.log()
    assert not JWT_RE.search(log), "a JWT-shaped string reached the log"
    assert API_KEY not in log and SECRET not in log
    closes = [line for line in log.splitlines() if "connection closed" in line]
    assert len(closes) == 2
    assert "user=carol" in closes[0] and "code=1000" in closes[0] and "duration=" in closes[0]
    assert "code=4001" in closes[1]


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_event(tmp_path):
    """Publishers run flat out from threads; SIGKILL mid-stream; after a restart every
    acknowledged event is there with its seq and id, and the sequence continues without a gap."""
    server = ServerProcess(tmp_path / "data").start()
    acked: list[dict] = []
    stop = threading.Event()

    def publisher(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                acked.append(server.publish("dur.c", data={"k": k, "i": i}, id=f"p{k}-{i}"))
            except Exception:
                return  # the server died under us: that publish was never acknowledged
            i += 1

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    while len(acked) < 300:
        time.sleep(0.01)
    server.kill()
    stop.set()
    for t in threads:
        t.join(10)
    server.start()
    try:
        status, info = server.api("GET", "/api/v1/channels/dur.c")
        head = info["headSeq"]
        assert head >= len(acked)
        events = []
        while len(events) < head:
            _, page = server.api("GET", f"/api/v1/channels/dur.c/history?after={len(events)}&limit=1000")
            events += page["events"]
        assert [e["seq"] for e in events] == list(range(1, head + 1))
        by_seq = {e["seq"]: e for e in events}
        for a in acked:
            assert by_seq[a["seq"]]["id"] == a["id"] and a["epoch"] == by_seq[a["seq"]]["epoch"]
        nxt = server.publish("dur.c", data={})
        assert nxt["seq"] == head + 1 and nxt["epoch"] == acked[0]["epoch"]
        again = server.publish("dur.c", data={"k": 0, "i": 0}, id="p0-0")  # idempotency survived too
        assert again["seq"] == [a for a in acked if a["id"] == "p0-0"][0]["seq"]
    finally:
        server.stop()


def test_rotate_epoch_after_restoring_a_backup(tmp_path):
    """The operator restores ./data from a backup taken at seq 3 while clients saw up to seq 5.
    Without a new epoch, seqs 4-5 would be reused for different events under the old epoch.
    `wsserver rotate-epoch` (server stopped) gives the channel a new epoch: the client holding seq
    5 gets reset, and the restored events stay readable under the new epoch."""
    import shutil

    data = tmp_path / "data"
    server = ServerProcess(data).start()
    for i in range(3):
        server.publish("restore.c", data={"i": i})
    server.publish("other.c", data={})
    server.stop()
    backup = tmp_path / "backup"
    shutil.copytree(data, backup)
    server.start()
    seen = [server.publish("restore.c", data={"i": i}) for i in (3, 4)]
    server.stop()
    shutil.rmtree(data)
    shutil.copytree(backup, data)

    server.start()
    busy = run(["rotate-epoch", "--all", "--data-dir", str(data)])
    assert busy.returncode == 1 and "in use by another wsserver" in busy.stderr  # refused under a live server
    server.stop()
    both = run(["rotate-epoch", "restore.c", "--all", "--data-dir", str(data)])
    assert both.returncode == 2
    missing = run(["rotate-epoch", "nope.c", "--data-dir", str(data)])
    assert missing.returncode == 1 and "no such channel" in missing.stderr
    done = run(["rotate-epoch", "restore.c", "--data-dir", str(data)])
    assert done.returncode == 0, done.stderr
    assert "restore.c: epoch" in done.stdout and "(3 stored events kept)" in done.stdout

    server.start()
    try:
        old_epoch = seen[-1]["epoch"]
        _, info = server.api("GET", "/api/v1/channels/restore.c")
        assert info["epoch"] != old_epoch and info["headSeq"] == 3
        _, history = server.api("GET", "/api/v1/channels/restore.c/history?after=0&limit=10")
        assert [e["seq"] for e in history["events"]] == [1, 2, 3]
        assert {e["epoch"] for e in history["events"]} == {info["epoch"]}
        _, other = server.api("GET", "/api/v1/channels/other.c")
        assert other["epoch"] == old_epoch.rsplit("-", 1)[0] + "-0"  # only the named channel moved
        with connect(server.ws_url) as ws:
            ws.send(frame("auth", {"token": make_token("a")}))
            assert json.loads(ws.recv(5))["type"] == "auth_ok"
            ws.send(frame("subscribe", {"channel": "restore.c", "lastSeq": 5, "epoch": old_epoch}))
            answer = json.loads(ws.recv(5))
            assert answer["payload"]["recovery"] == "reset" and answer["payload"]["epoch"] == info["epoch"]
        nxt = server.publish("restore.c", data={"after": True})
        assert (nxt["seq"], nxt["epoch"]) == (4, info["epoch"])
    finally:
        server.stop()
