"""Runs the coverage-guided atheris fuzzer on the frame decoder for a short, fixed time (slow tier)
and fails on any crash it finds; prints its figures (runs, execs/s, coverage)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
#: Seconds of fuzzing per CI run: short by design; run it longer by hand (see docs/hardening.md).
FUZZ_SECONDS = 25


@pytest.mark.slow
def test_atheris_finds_no_crash_in_the_frame_decoder(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "tests.hardening.fuzz_decoder", str(corpus), str(HERE / "corpus" / "decoder"),
         f"-dict={HERE / 'corpus' / 'decoder.dict'}", f"-max_total_time={FUZZ_SECONDS}",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=FUZZ_SECONDS + 60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    cov = re.findall(r"DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)", output)
    assert done and cov, output[-3000:]
    runs, secs = int(done.group(1)), int(done.group(2))
    print(f"atheris: {runs} runs in {secs}s ({runs // max(secs, 1)} execs/s), cov {cov[-1][0]}, corpus {cov[-1][2]}")
    assert runs > 1000  # it really fuzzed
    assert not list(tmp_path.glob("crash-*"))
