#!/bin/sh
# Hutch initramfs /init (busybox sh). Runs on every boot, under TCG too: keep
# it short and fork little. It loads the virtio modules, finds the disks by
# ext4 label (virtio-mmio probe order is not stable under microvm), stacks an
# overlay of the read-only base image and the sandbox's writable disk, and
# hands PID 1 to the guest agent. Any failure prints one line to the console
# and powers off, so a broken boot ends the QEMU process instead of hanging.
# Only /bin exists here; not exported: the agent gets the standard PATH below.
PATH=/bin

fail() {
  echo "hutch-init: FATAL: $*"
  poweroff -f
  # poweroff -f should not return; if it does, don't fall through to a panic loop.
  while :; do sleep 1; done
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"

# Load order comes from the build (dependencies first).
while read -r mod; do
  [ -n "$mod" ] || continue
  insmod "/lib/modules/$mod.ko" || fail "insmod $mod"
done < /hutch/modules

# Block devices appear as the virtio-mmio devices are probed: usually at once,
# but wait a little for both labels before giving up.
base=""
disk=""
tries=0
while :; do
  [ -n "$base" ] || base=$(findfs LABEL=hutch-base 2>/dev/null)
  [ -n "$disk" ] || disk=$(findfs LABEL=hutch-disk 2>/dev/null)
  [ -n "$base" ] && [ -n "$disk" ] && break
  tries=$((tries + 1))
  [ "$tries" -le 40 ] || fail "disk not found by label (hutch-base: ${base:-missing}, hutch-disk: ${disk:-missing}; block devices:" $(ls /sys/block) ")"
  sleep 0.05
done

mkdir -p /base /disk /newroot
mount -t ext4 -o ro,noload "$base" /base || fail "mount base image $base"
# noinit_itable: the disk is made with lazy init; zeroing its inode tables
# in the background would only steal emulated CPU and write to a sparse file.
mount -t ext4 -o rw,noinit_itable "$disk" /disk || fail "mount writable disk $disk"
mkdir -p /disk/upper /disk/work || fail "mkdir upper/work on $disk"
mount -t overlay overlay -o lowerdir=/base,upperdir=/disk/upper,workdir=/disk/work /newroot \
  || fail "mount overlay"

mkdir -p /newroot/run /newroot/dev /newroot/proc /newroot/sys || fail "create mount points in new root"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "mount /run tmpfs"
mkdir -p /newroot/run/hutch || fail "mkdir /run/hutch"
cp /hutch/agent /newroot/run/hutch/agent || fail "copy agent"
chmod 0755 /newroot/run/hutch/agent

mount --move /dev /newroot/dev || fail "move /dev"
mount --move /proc /newroot/proc || fail "move /proc"
mount --move /sys /newroot/sys || fail "move /sys"

# The environment the agent (PID 1) starts with: the kernel's (HOME, TERM) + PATH.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
exec switch_root /newroot /run/hutch/agent
fail "switch_root to /run/hutch/agent"
