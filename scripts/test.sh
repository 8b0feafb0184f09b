#!/usr/bin/env bash
# Sets up (packages, npm, build) and runs the whole test suite with ctest.
# Run as root: the collector tests load BPF programs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
ctest --test-dir build --output-on-failure --timeout 900 "$@"
