#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build, idempotently, the package layer of the lab's Spectrum-shaped host (issue #13) under
# $AIRLOCK_CACHE/spectrum-host/root: the Debian trixie packages a Spectrum host runs and the
# sysupdate runtime lacks (btrfs-progs, s6, execline, curl, bubblewrap), installed by apt into the
# upper layer of an overlay over the default runtime tree ($AIRLOCK_CACHE/trixie,
# scripts/make-runtime.sh).
# The runtime is never written.  The lab stacks this layer on the runtime, read-only
# (airlock.lab.spectrum_host).  The stamp is keyed on this script, layout.env and the runtime's own
# stamp, so a rebuilt runtime rebuilds the layer.  Uses the runtime's apt lists (from debootstrap);
# only when they are stale does it run `apt-get update`.  Needs root and a package mirror.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/src/airlock/layout.env"
cache=${AIRLOCK_CACHE:-$AIRLOCK_CACHE_DEFAULT}
dir_var=RUNTIME_${RUNTIME_DEFAULT}_DIR stamp_var=RUNTIME_${RUNTIME_DEFAULT}_STAMP
runtime="$cache/${!dir_var}"
runtime_stamp="$runtime/${!stamp_var}"
out="$cache/$SPECTRUM_HOST_DIR"
packages=(btrfs-progs s6 execline curl bubblewrap)

if [ ! -f "$runtime_stamp" ]; then
  echo "make-spectrum-host: the trixie runtime is missing; run scripts/make-runtime.sh first" >&2
  exit 1
fi
key=$( (cat "$0" "$here/src/airlock/layout.env"; stat -c '%i %Y' "$runtime_stamp") |
  sha256sum | cut -c1-16)
stamp="$out/$SPECTRUM_HOST_STAMP_PREFIX$key"
[ -f "$stamp" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "make-spectrum-host: must run as root" >&2
  exit 1
fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
[ -f "$stamp" ] && exit 0

start=$SECONDS
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/upper" "$work/work" "$work/merged"
# In a private mount namespace: every mount below dies with it, even if this script is killed.
unshare --mount --propagation private -- bash -euo pipefail -c '
  runtime=$1 w=$2; shift 2
  mount -t overlay overlay -o "lowerdir=$runtime,upperdir=$w/upper,workdir=$w/work" "$w/merged"
  m=$w/merged
  mount -t proc proc "$m/proc"
  mount --rbind /dev "$m/dev"
  mount -t tmpfs tmpfs "$m/tmp"
  mount -t tmpfs tmpfs "$m/run"
  mount --bind /etc/resolv.conf "$m/etc/resolv.conf"
  apt() {
    chroot "$m" env -i PATH=/usr/sbin:/usr/bin DEBIAN_FRONTEND=noninteractive \
      apt-get -q -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0 "$@"
  }
  if ! apt install -y --no-install-recommends "$@" >"$w/apt.log" 2>&1; then
    apt update >>"$w/apt.log" 2>&1
    apt install -y --no-install-recommends "$@" >>"$w/apt.log" 2>&1
  fi
  for tool in btrfs s6-setlock s6-svscan execlineb curl bwrap; do
    chroot "$m" sh -c "command -v $tool" >/dev/null
  done
' bash "$runtime" "$work" "${packages[@]}" || {
  echo "make-spectrum-host: apt-get in the overlay failed; log:" >&2
  tail -20 "$work/apt.log" >&2 || true
  exit 1
}
# The downloaded packages and apt's caches are not part of the layer.
find "$work/upper/var/cache/apt" -type f \( -name '*.deb' -o -name '*.bin' \) -delete
rm -rf "$out/root" "$out/$SPECTRUM_HOST_STAMP_PREFIX"*
mv "$work/upper" "$out/root"
touch "$stamp"
echo "make-spectrum-host: ${packages[*]} in $out/root ($((SECONDS - start)) s)"
