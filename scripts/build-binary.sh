#!/usr/bin/env bash
# Builds the one-file executable dist/wsserver (every command: serve, token, admin, chaos-proxy).
# Usage: scripts/build-binary.sh      (creates/uses .venv; needs Python 3.11+ with a shared libpython)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
mkdir -p build

# One build at a time per checkout: the build info file and build/ are shared.
exec 9>build/.build-binary.lock
flock 9

# The project and its `build` extra (PyInstaller). Skipped when both are already importable, so a
# build from a running test session does not reinstall the package under the tests' feet.
if ! .venv/bin/python -c "import PyInstaller, wsserver" 2>/dev/null; then
  .venv/bin/pip install -q -e '.[build]'
fi

# Build information baked into the binary (`wsserver --version`, and the first log line of `serve`).
info=wsserver/_build_info.py
trap 'rm -f "$info"' EXIT
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi
cat >"$info" <<EOF
"""Written by scripts/build-binary.sh for the PyInstaller build; removed afterwards.
Read by wsserver.cli.version_text()."""

BUILT_AT = "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
COMMIT = "$commit"
EOF

started=$(date +%s)
.venv/bin/pyinstaller --noconfirm --log-level WARN \
  --workpath build/pyinstaller --distpath dist pyinstaller.spec
echo "built dist/wsserver ($(du -h dist/wsserver | cut -f1)) in $(( $(date +%s) - started ))s: $(dist/wsserver --version)"
