#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install, idempotently, the Debian packages airlock's tests and demo need (Debian 12, as root).
# dpkg's own record is the stamp: only packages it does not list as installed are installed.
set -euo pipefail

PACKAGES=(
  btrfs-progs gpg gpgv sqv bubblewrap s6 execline fdisk util-linux debootstrap
  iproute2 openssl curl cpio busybox-static erofs-utils cryptsetup-bin
  qemu-system-x86 qemu-utils dosfstools mtools kmod ovmf dmsetup
  xz-utils bzip2 zstd lz4 nginx
  zsh groff-base man-db
  debhelper dh-python python3-installer
)
# nginx: the tests and bench/delta.py start their own instances (generated config, loopback or a
# test-made network namespace, stopped by PID); Debian may also enable its default site on :80,
# which nothing here uses.

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
