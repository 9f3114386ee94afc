#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build, idempotently, the systemd-sysupdate runtimes: one Debian root per name in RUNTIMES
# (src/airlock/layout.env), made with debootstrap under $AIRLOCK_CACHE/RUNTIME_<NAME>_DIR; the
# name is the systemd major version the root must hold (257: trixie, 262: testing).
#   scripts/make-runtime.sh            every runtime
#   scripts/make-runtime.sh 262        only that one
# A runtime whose version the host's own systemd-sysupdate already has is not built: the host's
# binary serves it (airlock.backends.apply.runtime.locate).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/src/airlock/layout.env"
cache=${AIRLOCK_CACHE:-$AIRLOCK_CACHE_DEFAULT}

# What every runtime holds: sysupdate and systemd-pull (systemd-container), systemd-analyze and
# libsystemd-shared (systemd, for the oracles), gpg (Verify=yes), sfdisk (partition targets),
# python3 (the namespace helper, the oracles) and httpx (the VM agent when a guest boots this
# root), and the libraries newer systemd only dlopen()s — curl for systemd-pull, the
# decompressors — which are Recommends/Suggests, so debootstrap would leave them out.  The
# default runtime also carries ukify and the EFI stub, from which the demo builds real UKIs, and
# what the QEMU guest's root needs.
base=systemd-container,systemd,gpg,gpgv,fdisk,python3,python3-httpx,python3-typing-extensions,python3-rich
base=$base,libcurl4t64,libbz2-1.0,liblz4-1,liblzma5,libzstd1,zlib1g
extra_default=dbus,ca-certificates,systemd-ukify,systemd-boot-efi,python3-cffi-backend

names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
  IFS=, read -r -a names <<<"$RUNTIMES"
fi

host_major=
host_sysupdate=/usr/lib/systemd/systemd-sysupdate
if [ -x "$host_sysupdate" ]; then
  host_major=$("$host_sysupdate" --version 2>/dev/null | awk 'NR==1{print $2}' | cut -d. -f1)
fi

mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

# needed NAME: 0 when NAME must be built (not served by the host, no stamp yet).
needed() {
  local name=$1 dir_var stamp_var
  case ",$RUNTIMES," in
    *",$name,"*) ;;
    *) echo "make-runtime: unknown runtime '$name' (RUNTIMES=$RUNTIMES)" >&2; exit 2 ;;
  esac
  if [ "$host_major" = "$name" ]; then
    echo "make-runtime: host systemd-sysupdate $host_major serves runtime $name"; return 1
  fi
  dir_var=RUNTIME_${name}_DIR stamp_var=RUNTIME_${name}_STAMP
  [ ! -f "$cache/${!dir_var}/${!stamp_var}" ]
}

build() {
  local name=$1 suite_var dir_var stamp_var suite root stamp include v start
  suite_var=RUNTIME_${name}_SUITE dir_var=RUNTIME_${name}_DIR stamp_var=RUNTIME_${name}_STAMP
  suite=${!suite_var} root="$cache/${!dir_var}" stamp="$cache/${!dir_var}/${!stamp_var}"
  [ -f "$stamp" ] && return 0  # built by a concurrent caller while we waited for the lock
  include=$base
  [ "$name" = "$RUNTIME_DEFAULT" ] && include="$include,$extra_default"
  echo "make-runtime: debootstrap $suite into $root for systemd $name (a minute or two)"
  start=$SECONDS
  rm -rf "$root.tmp"
  debootstrap --variant=minbase --include="$include" \
    "$suite" "$root.tmp" "$mirror" >"$cache/debootstrap-$name.log" 2>&1 || {
      echo "make-runtime: debootstrap failed; see $cache/debootstrap-$name.log" >&2
      tail -5 "$cache/debootstrap-$name.log" >&2; return 1; }
  # Check before publishing: the root's sysupdate runs and is exactly this major version (the
  # rules and tests for it were verified against that binary), and gpg is present.
  v=$(chroot "$root.tmp" /usr/lib/systemd/systemd-sysupdate --version | awk 'NR==1{print $2}')
  if [ "${v%%.*}" != "$name" ] || [ ! -x "$root.tmp/usr/bin/gpg" ]; then
    echo "make-runtime: $suite gave systemd-sysupdate '$v' (wanted $name) or no gpg;" \
      "update RUNTIME_${name}_SUITE in src/airlock/layout.env" >&2
    return 1
  fi
  rm -rf "$root"
  mv "$root.tmp" "$root"
  touch "$stamp"
  echo "make-runtime: systemd-sysupdate $v ready in $root ($((SECONDS - start)) s)"
}

todo=()
for name in "${names[@]}"; do
  if needed "$name"; then todo+=("$name"); fi
done
[ "${#todo[@]}" -eq 0 ] && exit 0
mkdir -p "$cache"
# One build at a time: a second caller waits for the first, then finds the stamps.
exec 9>"$cache/.make-runtime.lock"
flock 9
# The roots are bootstrapped side by side: mostly downloads, so they overlap well.
pids=()
for name in "${todo[@]}"; do
  build "$name" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit "$status"
