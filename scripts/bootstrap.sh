#!/usr/bin/env bash
# Brings a fresh Debian machine to the point where lproxy builds and mounts:
# system packages (only those missing), node modules (only when stale), the build.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# fuse-native's prebuilt addon links libfuse.so.2; Debian 13 renamed the package.
if ! ldconfig -p 2>/dev/null | grep -q 'libfuse\.so\.2 '; then
  if apt-cache show libfuse2t64 >/dev/null 2>&1; then need+=(libfuse2t64); else need+=(libfuse2); fi
fi
command -v fusermount >/dev/null 2>&1 || need+=(fuse3)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ ! -f dist/.built ] || [ -n "$(find src tsconfig.json -newer dist/.built -print -quit)" ]; then
  npx tsc -p tsconfig.json
  touch dist/.built
fi
