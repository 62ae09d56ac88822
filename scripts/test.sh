#!/usr/bin/env bash
# The whole test suite: unit tests, the guest agent as a black box, and end-to-end tests
# that boot real VMs (TCG where there is no KVM) through the HTTP API and the official SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "==> typecheck"
npx tsc -p tsconfig.json --noEmit
echo "==> agent golden frames (C decoder)"
make -s -C agent test
echo "==> images (cached after the first build)"
node dist/cli/main.js images build
echo "==> tests"
# One runner for every suite so its closing summary counts them all. Files run one at a
# time: e2e files boot VMs and this machine has 2 cores.
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec \
  'test/unit/**/*.test.ts' 'test/agent/**/*.test.ts' 'test/e2e/**/*.test.ts'
