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
echo "==> VMM jailer and its read-only RAM shim (built once; a server would build them too)"
make -s -C jailer
echo "==> images (cached after the first build)"
node dist/cli/main.js images build
echo "==> tests"
# One runner for every suite so its closing summary counts them all.
exec ./scripts/run-tests.sh test/unit test/agent test/e2e
