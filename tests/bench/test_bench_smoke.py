"""Smoke run of the benchmark suite (bench/run.py --quick) against wsserver and the naive Trio
peer: every scenario completes, delivers every event, and the report and JSON are written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_quick_bench_runs_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--peers", "trio-websocket", "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=170, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    scenarios = results["scenarios"]
    assert set(scenarios) == {"fanout_100", "chat", "idle_memory", "catch_up", "durable_embedded", "durable_redis",
                              "two_nodes_redis"}
    for name, cells in scenarios.items():
        for server, cell in cells.items():
            assert "error" not in cell, (name, server, cell)
    for server in ("wsserver", "trio-websocket"):
        fan = scenarios["fanout_100"][server]
        assert all(run["complete"] and run["deliveries_per_s"] > 0 for run in fan["closed"]), fan
        opened = [run for runs in fan["open"].values() for run in runs]
        assert opened and all(run["complete"] and run["lat_ms"]["n"] == run["expected"] for run in opened)
    assert all(run["complete"] for run in scenarios["chat"]["wsserver"]["closed"])
    assert scenarios["idle_memory"]["wsserver"]["connected"] == results["config"]["idle_connections"]
    catch_up = scenarios["catch_up"]["wsserver"]
    assert "errors" not in catch_up and catch_up["replay_s"][0] > 0 and catch_up["storm_s"][0] > 0
    for key in ("durable_embedded", "durable_redis"):
        detail = scenarios[key]["wsserver"]["detail"][0]
        assert detail["acked"] == detail["sent"] == results["config"]["durable_publishes"]
    assert all(run["complete"] for run in scenarios["two_nodes_redis"]["wsserver"]["closed"])
    report = (out / "report.md").read_text()
    assert "## Targets (issue 10)" in report and "| wsserver |" in report
