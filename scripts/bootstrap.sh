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
# The native binding (native/): libfuse3's headers, found through pkg-config, and node-gyp's
# toolchain (a compiler, make, Python).
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists fuse3; } || need+=(pkg-config libfuse3-dev)
{ command -v g++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1; } || need+=(build-essential)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The crash-consistency test formats an ext4 image (mkfs.ext4) and loop-mounts it.
{ command -v mkfs.ext4 || [ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ]; } >/dev/null 2>&1 || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

# Rebuilt when its sources changed, as dist/ is. Without it the mount daemon falls back to
# fuse-native, so a failed build is a warning here.
if [ ! -f native/build/.built ] || [ -n "$(find native/src native/binding.gyp -newer native/build/.built -print -quit)" ]; then
  echo "bootstrap: building the native FUSE binding (native/)" >&2
  # Node's own headers where it ships them, instead of a download.
  nodedir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  gyp_args=()
  [ -f "$nodedir/include/node/node_api.h" ] && gyp_args+=("--nodedir=$nodedir")
  if npm run --silent build:native -- "${gyp_args[@]}" >/dev/null; then
    touch native/build/.built
  else
    echo "bootstrap: WARNING: the native FUSE binding did not build; mounts will use fuse-native (libfuse 2)" >&2
  fi
fi

if [ ! -f dist/.built ] || [ -n "$(find src tsconfig.json -newer dist/.built -print -quit)" ]; then
  npx tsc -p tsconfig.json
  touch dist/.built
fi

# The README's `lproxy` on PATH, and mount(8)'s helper for `mount -t lproxy` and fstab lines
# where mount(8) looks for it, both linked to this checkout (`lproxy install` also installs
# the systemd unit and the logrotate file; nothing here needs systemd).
if [ "$(readlink -f /usr/local/bin/lproxy 2>/dev/null)" != "$PWD/bin/lproxy.js" ] || [ "$(readlink -f /sbin/mount.lproxy 2>/dev/null)" != "$PWD/bin/mount.lproxy.js" ]; then
  if node bin/lproxy.js install >/dev/null; then
    echo "bootstrap: installed lproxy as /usr/local/bin/lproxy and mount.lproxy as /sbin/mount.lproxy (linked to $PWD)" >&2
  else
    echo "bootstrap: WARNING: lproxy install failed; run 'node bin/lproxy.js' instead of 'lproxy'" >&2
  fi
fi
# Pacemaker's agents (ocf:lproxy:target, fence_lproxy); the directories are made if missing.
node bin/lproxy.js ha install-agents >/dev/null || echo "bootstrap: WARNING: could not install the HA agents (not root?)" >&2
