#!/usr/bin/env bash
# Autobahn|Testsuite (issue 9): `wstest` runs only under Python 2.7, which this machine image
# carries in pyenv (Debian 12 has no python2 package). Installs the pinned suite from PyPI into
# .autobahn/ (a plain --target dir: no virtualenv needed, nothing added to the interpreter's own
# site-packages) and records the interpreter in .autobahn/python for tests/conformance.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)
req=tests/conformance/autobahn-requirements.txt
target=.autobahn

py2=""
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7 "$(command -v python2.7 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then py2=$candidate; break; fi
done
if [ -z "$py2" ]; then
  echo "no Python 2.7 interpreter (pyenv versions/2.7*/bin/python2.7 or python2.7 on PATH):" >&2
  echo "Autobahn|Testsuite cannot run; tests/conformance/test_autobahn.py will fail in CI" >&2
  exit 1
fi

stamp=$(sha256sum "$req" | cut -c1-16)
if [ "$(cat "$target/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$target"
  # --no-deps: the requirements file pins the whole resolved set. pip 19 on 2.7 is chatty
  # (deprecation, missing local index dirs): its output is shown only when it fails.
  pip_log=$(mktemp)
  if ! "$py2" -m pip install -q --disable-pip-version-check --no-warn-script-location --no-deps \
      --target "$target" -r "$req" >"$pip_log" 2>&1; then
    cat "$pip_log" >&2
    exit 1
  fi
  rm -f "$pip_log"
  echo "$stamp" > "$target/.stamp"
fi
echo "$py2" > "$target/python"
"$py2" -c "import site, sys; site.addsitedir(sys.argv[1]); import autobahntestsuite; print('autobahntestsuite', autobahntestsuite.__version__)" "$target"
echo "-- Autobahn ready in $(( $(date +%s) - started ))s"
