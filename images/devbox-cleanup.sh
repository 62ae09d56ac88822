#!/bin/sh
# Post-debootstrap cleanup of the devbox:1 tree. Run by the image builder as
# `sh devbox-cleanup.sh ROOT` on the host (no chroot needed). Changing this
# file rebuilds devbox:1.
set -eu
root=$1
[ -d "$root/usr" ] || { echo "devbox-cleanup: $root is not a rootfs" >&2; exit 1; }

# Docs, man pages, locales, caches: nobody reads them in a sandbox.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/usr/share/lintian/* "$root"/usr/share/linda/*
# ...and keep future `apt-get install`s from bringing them back.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat > "$root/etc/dpkg/dpkg.cfg.d/01-hutch-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG

# apt: lists and package caches are rebuilt by `apt-get update` when needed.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
mkdir -p "$root/var/lib/apt/lists/partial"

# Logs of the build itself.
find "$root/var/log" -type f -exec truncate -s 0 {} +

# Host keys must be unique per sandbox: generated at first sshd start.
rm -f "$root"/etc/ssh/ssh_host_*

# Identity files the agent writes per sandbox: links into its tmpfs
# (/run/hutch), where a write costs no disk work (agent/configure.c).
rm -f "$root/etc/hostname" "$root/etc/hosts" "$root/etc/resolv.conf" "$root/etc/machine-id"
ln -s /run/hutch/hostname "$root/etc/hostname"
ln -s /run/hutch/hosts "$root/etc/hosts"
ln -s /run/hutch/resolv.conf "$root/etc/resolv.conf"
: > "$root/etc/machine-id"

# The agent is PID 1 (no systemd, no init scripts run at boot).
mkdir -p "$root/root" "$root/run" "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
chmod 1777 "$root/tmp" "$root/var/tmp"
# /run is a tmpfs at boot (sshd's /run/sshd must be made by whoever starts it).
rm -rf "$root"/tmp/* "$root"/run/*
