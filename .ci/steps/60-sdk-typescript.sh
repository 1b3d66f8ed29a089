#!/usr/bin/env bash
# TypeScript SDK (issue 12): install from the committed lockfile, build (frame types generated
# from docs/schema, so protocol drift fails here), then run its tests against the real server,
# through the chaos proxy, and in Debian's headless Chromium (never a downloaded browser); last,
# `npm pack` the installable tarball (sdk/typescript/wsserver-client-<version>.tgz, the README's
# install line) from the build just tested.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)

need_apt=()
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "-- installing ${need_apt[*]} (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The tests start `.venv/bin/python -m wsserver serve` and the chaos proxy.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c 'import wsserver, trio_websocket' 2>/dev/null || .venv/bin/pip install -q -e '.[test]'

cd sdk/typescript
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
CI=true npm test
tarball=$(npm pack --ignore-scripts --loglevel=error | tail -1)
echo "-- packed sdk/typescript/$tarball ($(du -k "$tarball" | cut -f1) KiB)"
echo "-- TypeScript SDK built and tested in $(( $(date +%s) - started ))s"
