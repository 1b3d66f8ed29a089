#!/usr/bin/env bash
# Protocol docs: fail on drift between the committed docs and the server's types
# (`python -m protocol_spec --check`), validate the AsyncAPI document with the official AsyncAPI
# CLI (pinned in protocol_spec/npm/) and the OpenAPI document with openapi-spec-validator.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'

echo "-- drift check"
.venv/bin/python -m protocol_spec --check

echo "-- OpenAPI 3.1 (openapi-spec-validator)"
.venv/bin/openapi-spec-validator docs/openapi.json

echo "-- AsyncAPI 3.0 (@asyncapi/cli)"
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
pinned=$(node -p 'require("./protocol_spec/npm/package.json").devDependencies["@asyncapi/cli"]')
installed=$(node -p 'try { require("./protocol_spec/npm/node_modules/@asyncapi/cli/package.json").version } catch { "" }')
if [ "$installed" != "$pinned" ]; then
  (cd protocol_spec/npm && npm ci --no-audit --no-fund --loglevel=error)
fi
# The CLI reports usage metrics to a remote service unless analytics are off in its config file,
# and asks the npm registry for newer versions: neither belongs in a build, and both hang or
# fail without a network. Point it at a private config with analytics off and skip the check.
analytics=$(mktemp)
trap 'rm -f "$analytics"' EXIT
echo '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"ci"}' > "$analytics"
ASYNCAPI_METRICS_CONFIG_PATH="$analytics" ASYNCAPI_SKIP_NEW_VERSION_CHECK=true \
  protocol_spec/npm/node_modules/.bin/asyncapi validate docs/asyncapi.json --fail-severity warn

echo "-- protocol docs checked in $(( $(date +%s) - started ))s"
