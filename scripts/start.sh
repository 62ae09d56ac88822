#!/usr/bin/env bash
# One command to a working server: installs what is missing, builds, then serves.
# Images (kernel, initramfs, devbox:1, minimal:1) are built on first run, with progress,
# and cached in HUTCH_CACHE_DIR (default ~/.cache/hutch).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec node dist/cli/main.js serve "$@"
