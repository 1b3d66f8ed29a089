"""Measures the built binary for docs/deploy.md: file size, and start-up time from exec to the
first accepted WebSocket handshake (median of several zero-config runs, each in a fresh directory).

Usage: .venv/bin/python scripts/measure-binary.py [dist/wsserver] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import free_port  # noqa: E402

TIMEOUT = 30.0


def time_to_handshake(command: list[str]) -> float:
    """Seconds from exec to the first successful WebSocket handshake; stops the server after."""
    with tempfile.TemporaryDirectory() as workdir:
        port, api_port = free_port(), free_port()
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "WSSERVER_HOST": "127.0.0.1",
               "WSSERVER_PORT": str(port), "WSSERVER_API_PORT": str(api_port)}
        if command[0] == sys.executable:
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
        started = time.perf_counter()
        proc = subprocess.Popen([*command, "serve"], cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while time.perf_counter() - started < TIMEOUT:
                try:
                    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT):
                        return time.perf_counter() - started
                except OSError:
                    time.sleep(0.005)
            raise RuntimeError(f"{command} did not accept a WebSocket in {TIMEOUT}s")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(TIMEOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", nargs="?", default="dist/wsserver")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    binary = Path(args.binary).resolve()
    print(f"size: {os.path.getsize(binary) / 1e6:.1f} MB ({binary})")
    for name, command in (("binary", [str(binary)]), ("source (python -m wsserver)", [sys.executable, "-m", "wsserver"])):
        times = [time_to_handshake(command) for _ in range(args.runs)]
        print(f"{name}: exec → first WebSocket handshake: median {statistics.median(times) * 1000:.0f} ms "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, {args.runs} runs)")


if __name__ == "__main__":
    main()
