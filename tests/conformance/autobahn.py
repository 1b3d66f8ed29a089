"""Runs Autobahn|Testsuite's fuzzing client (Python 2.7, installed by .ci/steps/50-autobahn.sh)
against a WebSocket URL and judges its verdicts against the committed allow-list."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / ".autobahn"
REPORTS = Path(__file__).parent / "reports"
ALLOWLIST = Path(__file__).parent / "autobahn-allowlist.json"
#: RFC 6455 framing, pings, reserved bits/opcodes, fragmentation, UTF-8, close handling,
#: large messages (9.x) and auto-fragmentation (10.x). 12.x/13.x need permessage-deflate,
#: which the server does not negotiate (test_no_compression.py shows it).
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
EXCLUDED = ["12.*", "13.*"]
#: Seconds one fuzzing-client run may take (all of 1–7, 9, 10 take ~30 s here).
RUN_TIMEOUT = 600.0
#: Summary lines of this session's runs, printed by conftest's terminal summary.
SUMMARY: list[str] = []

_LAUNCH = (
    "import site, sys; site.addsitedir(sys.argv[1]); sys.argv = ['wstest'] + sys.argv[2:]; "
    "from autobahntestsuite.wstest import run; run()"
)


def wstest_python() -> str:
    """The Python 2.7 interpreter the CI step recorded; skips locally, fails in CI, if missing."""
    marker = INSTALL / "python"
    if not marker.exists():
        message = "Autobahn|Testsuite is not installed: run `bash .ci/steps/50-autobahn.sh`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return marker.read_text().strip()


@attrs.frozen
class Run:
    """One fuzzing-client run: its verdicts per case and where its report is."""

    agent: str
    outdir: Path
    results: dict[str, dict]

    def case_report(self, case_id: str) -> dict:
        return json.loads((self.outdir / self.results[case_id]["reportfile"]).read_text())


def run_fuzzingclient(agent: str, url: str, cases: list[str], exclude: list[str] = EXCLUDED) -> Run:
    """Runs `wstest -m fuzzingclient`; its HTML/JSON report lands in reports/<agent>/."""
    python = wstest_python()
    outdir = REPORTS / agent
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    with open(outdir / "wstest.log", "wb") as log:
        subprocess.run(
            [python, "-c", _LAUNCH, str(INSTALL), "-m", "fuzzingclient", "-s", str(spec_path)],
            cwd=outdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            timeout=RUN_TIMEOUT, check=True,
        )
    index = outdir / "index.json"
    assert index.exists(), f"wstest wrote no report:\n{(outdir / 'wstest.log').read_text()[-3000:]}"
    return Run(agent, outdir, json.loads(index.read_text())[agent])


def case_key(case_id: str) -> list[int]:
    return [int(part) for part in case_id.split(".")]


def judge(run: Run) -> tuple[list[str], collections.Counter]:
    """Every verdict (behavior and close behavior) must be OK, or exactly what the allow-list
    grants this agent for that case. Returns (problems, counts of the cases' behavior)."""
    allowed = json.loads(ALLOWLIST.read_text())["cases"]
    problems: list[str] = []
    counts: collections.Counter = collections.Counter()
    used: set[str] = set()
    for case_id in sorted(run.results, key=case_key):
        result = run.results[case_id]
        counts[result["behavior"]] += 1
        for key in ("behavior", "behaviorClose"):
            verdict = result[key]
            if verdict == "OK":
                continue
            entry = allowed.get(case_id)
            if entry and run.agent in entry["agents"] and entry["verdict"] == verdict:
                used.add(case_id)
                continue
            problems.append(f"{case_id}: {key} {verdict} (not allow-listed for {run.agent}); see {run.outdir / result['reportfile']}")
    unused = sorted(
        (c for c, e in allowed.items() if run.agent in e["agents"] and c in run.results and c not in used), key=case_key
    )
    line = (
        f"autobahn {run.agent}: {len(run.results)} cases: "
        + ", ".join(f"{verdict} {counts[verdict]}" for verdict in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"))
        + f"; report {run.outdir.relative_to(ROOT)}/index.html"
        + (f"; allow-listed but OK this time: {', '.join(unused)}" if unused else "")
    )
    SUMMARY.append(line)
    (REPORTS / "summary.txt").write_text("\n".join(SUMMARY) + "\n")
    return problems, counts


def echo_free_cases(run: Run) -> list[str]:
    """Cases whose verdict does not depend on echoed data, read from the echo run's own reports:
    no data message expected back (reserved bits/opcodes at the start, fragmented control frames,
    invalid UTF-8, close codes and payloads, pings). 1.x, 9.x and 10.x are echo cases by
    definition (9.x/10.x judge their echoes in code, not in `expected`)."""
    selected = []
    for case_id in run.results:
        if case_id.split(".")[0] in ("1", "9", "10"):
            continue
        expected = run.case_report(case_id)["expected"]
        if not any(event[0] == "message" for events in expected.values() for event in events):
            selected.append(case_id)
    return sorted(selected, key=case_key)
