#!/usr/bin/env bash
# Installs what Hutch needs on a Debian machine (bookworm), then builds it.
# Idempotent: a second run only checks. Used by scripts/start.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-system-x86: the VMM; qemu-utils: qemu-img for disks; debootstrap, busybox-static,
# e2fsprogs, cpio, lz4, zstd: image builds; nftables, iproute2: the sandbox network;
# python3: the firewall's long-lived libnftables helper (ctypes);
# gcc, make, libc6-dev: the static guest agent; tmux: the e2e test of `hutch shell`;
# openssh-client: the e2e test of SSH through a tunnel; iputils-ping: e2e tests ping guests
# from inside the sandbox network.
APT_PACKAGES=(qemu-system-x86 qemu-utils debootstrap busybox-static e2fsprogs cpio lz4 zstd
  nftables python3 iproute2 gcc make libc6-dev ca-certificates tmux openssh-client iputils-ping)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
fi
echo "==> building"
npm run --silent build
