#!/usr/bin/env bash
# Proving ground (issue 5): the kernel-level tier needs `ip netns`, `tc` and `nft` as root.
# iproute2 (ip, tc) ships with Debian; nftables may not. Without them that tier skips itself.
set -euo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  echo "installing ${missing[*]} for the network-namespace tier"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
