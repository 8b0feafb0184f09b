#!/usr/bin/env bash
# Installs what MicroSentinel needs on Debian 12 (the apt packages listed in
# scripts/apt-packages.txt, and with --tests the npm packages the tests use),
# then configures and builds into ./build. Needs root for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--tests" ]] && with_tests=1

mapfile -t packages < <(grep -v '^\s*#' scripts/apt-packages.txt | sed '/^\s*$/d' | sort -u)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run this script as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's clickhouse-server and prometheus packages start services where systemd
# runs; the tests start their own instances on loopback ports instead.

if ((with_tests)); then
  while IFS= read -r lock; do
    dir=$(dirname "$lock")
    echo "setup: npm ci in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  done < <(find tests -name package-lock.json -not -path '*/node_modules/*')
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}"
cmake --build build -j"$(nproc)"
