#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build, idempotently, the systemd-sysupdate 257 runtime: a Debian trixie root made with debootstrap
# under $AIRLOCK_CACHE/trixie. Used only when the host has no systemd-sysupdate >= 257.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/src/airlock/layout.env"
cache=${AIRLOCK_CACHE:-$AIRLOCK_CACHE_DEFAULT}
root="$cache/$RUNTIME_DIR"
stamp="$root/$RUNTIME_STAMP"

host_sysupdate=/usr/lib/systemd/systemd-sysupdate
if [ -x "$host_sysupdate" ]; then
  v=$("$host_sysupdate" --version 2>/dev/null | awk 'NR==1{print $2}')
  if [ -n "$v" ] && [ "${v%%.*}" -ge 257 ] 2>/dev/null; then
    echo "make-runtime: host systemd-sysupdate $v is new enough"; exit 0
  fi
fi
mkdir -p "$cache"
# One build at a time: a second caller waits for the first, then finds the stamp.
exec 9>"$cache/.make-runtime.lock"
flock 9
[ -f "$stamp" ] && exit 0

mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

echo "make-runtime: debootstrap trixie into $root (about a minute)"
rm -rf "$root.tmp"
debootstrap --variant=minbase \
  --include=systemd-container,systemd,dbus,gpg,gpgv,fdisk,python3,python3-httpx,python3-rich,ca-certificates,systemd-ukify,systemd-boot-efi,python3-cffi-backend \
  trixie "$root.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    echo "make-runtime: debootstrap failed; see $cache/debootstrap.log" >&2; tail -5 "$cache/debootstrap.log" >&2; exit 1; }
# Check before publishing: sysupdate >= 257 runs, and gpg (needed by Verify=yes) is present.
v=$(chroot "$root.tmp" /usr/lib/systemd/systemd-sysupdate --version | awk 'NR==1{print $2}')
echo "make-runtime: systemd-sysupdate $v"
if ! [ "${v:-0}" -ge 257 ] 2>/dev/null || [ ! -x "$root.tmp/usr/bin/gpg" ]; then
  echo "make-runtime: the new root has no systemd-sysupdate >= 257 or no gpg" >&2; exit 1
fi
# ukify and the EFI stub let the demo build real UKIs (it falls back to a labelled stand-in).
rm -rf "$root"
mv "$root.tmp" "$root"
touch "$stamp"
