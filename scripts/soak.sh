#!/usr/bin/env bash
# The long soak (issue 5): the test suite's one-minute soak scenario, run for 10+ minutes.
# Usage: scripts/soak.sh [--duration SECONDS] [--clients N] [--seed S] [--json figures.json]
# Defaults: 600 s of faults, 50 clients, 40 HTTP events per second, a client publish every 5 s.
# Exits 0 when nothing was lost or duplicated and the server let go of every connection.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m tests.proving_ground.soak "$@"
