#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build, idempotently, the systemd-sysupdate 257 runtime: a Debian trixie root made with debootstrap
# under $AIRLOCK_CACHE/trixie. Used only when the host has no systemd-sysupdate >= 257.
set -euo pipefail
cache=${AIRLOCK_CACHE:-/var/cache/airlock}
root="$cache/trixie"
stamp="$root/.airlock-runtime-v1"

host_sysupdate=/usr/lib/systemd/systemd-sysupdate
if [ -x "$host_sysupdate" ]; then
  v=$("$host_sysupdate" --version 2>/dev/null | awk 'NR==1{print $2}')
  if [ -n "$v" ] && [ "${v%%.*}" -ge 257 ] 2>/dev/null; then
    echo "make-runtime: host systemd-sysupdate $v is new enough"; exit 0
  fi
fi
[ -f "$stamp" ] && exit 0

mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

echo "make-runtime: debootstrap trixie into $root (about a minute)"
rm -rf "$root.tmp"
mkdir -p "$cache"
debootstrap --variant=minbase \
  --include=systemd-container,systemd,dbus,gpg,gpgv,fdisk,python3,python3-httpx,python3-rich,ca-certificates \
  trixie "$root.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    echo "make-runtime: debootstrap failed; see $cache/debootstrap.log" >&2; tail -5 "$cache/debootstrap.log" >&2; exit 1; }
chroot "$root.tmp" /usr/lib/systemd/systemd-sysupdate --version | head -1
# The UKI stub and ukify are optional (the demo falls back to a labelled stand-in without them).
rm -rf "$root"
mv "$root.tmp" "$root"
touch "$stamp"
