#!/usr/bin/env bash
# Android/JVM SDK (issue 11): installs Debian's Kotlin 1.3, OkHttp 3.13, okio, org.json, JUnit 4
# (no Gradle, no downloads beyond apt), builds sdk/android and runs its JUnit tests against a real server.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v kotlinc >/dev/null 2>&1 || need+=(kotlin)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
for pkg in libokhttp-java libokio-java libandroid-json-java junit4 libkotlinx-coroutines-java; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The tests start `python -m wsserver serve` and the chaos proxy from the project's venv.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'
fi
make -C sdk/android
make -C sdk/android test
