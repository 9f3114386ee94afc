#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Download, idempotently, what a clean Debian root needs to install airlock's .deb OFFLINE
# (tests/integration/packaging): under $AIRLOCK_CACHE/debs, the package lists of trixie (lists/)
# and the .debs (archives/) of the Depends in packaging/debian/control, plus man-db,
# bash-completion and zsh (to try man pages and completions), as apt would fetch them for the
# default runtime root (trixie). The work happens in a throwaway overlay of that root: the runtime
# is never modified. A stamp keyed on this script, the control file and layout.env skips it all.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/src/airlock/layout.env"
cache=${AIRLOCK_CACHE:-$AIRLOCK_CACHE_DEFAULT}
dir_var=RUNTIME_${RUNTIME_DEFAULT}_DIR stamp_var=RUNTIME_${RUNTIME_DEFAULT}_STAMP
runtime="$cache/${!dir_var}"
out="$cache/$DEBS_DIR"
control="$here/packaging/debian/control"

key=$(cat "$0" "$control" "$here/src/airlock/layout.env" | sha256sum | cut -c1-16)
stamp="$out/$DEBS_STAMP_PREFIX$key"
[ -f "$stamp" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then echo "fetch-debs: must run as root" >&2; exit 1; fi
if [ ! -f "$runtime/${!stamp_var}" ]; then
  echo "fetch-debs: the trixie runtime is missing; run scripts/make-runtime.sh first" >&2; exit 1
fi

# The binary package's Depends as plain names: substitution variables, version constraints and
# every alternative but the first dropped (apt picks the first one too).
depends=$(sed -n '/^Package:/,$p' "$control" |
  sed -n '/^Depends:/,/^[A-Z][A-Za-z-]*:/{s/^Depends://;/^[A-Z]/d;p}' |
  tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[$][{][^}]*[}]//g' | tr -d ' \t' |
  grep -v '^$' | sort -u | tr '\n' ' ')
packages="$depends man-db bash-completion zsh"
echo "fetch-debs: downloading for a clean trixie root: $packages"

mkdir -p "$cache"
exec 9>"$cache/.fetch-debs.lock"
flock 9
[ -f "$stamp" ] && exit 0
work=$(mktemp -d "$cache/.debs.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/upper" "$work/work" "$work/root"
rm -rf "$out.tmp"
mkdir -p "$out.tmp/archives" "$out.tmp/lists"
# A private mount namespace: the overlay and its binds vanish with this process.
unshare --mount --propagation private -- bash -euo pipefail -c '
  runtime=$1 work=$2 out=$3; shift 3
  mount -t overlay overlay \
    -o "lowerdir=$runtime,upperdir=$work/upper,workdir=$work/work" "$work/root"
  mount --bind /proc "$work/root/proc"
  mount --bind /dev "$work/root/dev"
  cp /etc/resolv.conf "$work/root/etc/resolv.conf"
  chroot "$work/root" apt-get -q -o APT::Sandbox::User=root update >/dev/null
  chroot "$work/root" env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
    -o APT::Sandbox::User=root --no-install-recommends --download-only install "$@" >/dev/null
  # What was downloaded (the upper layer holds only that), and the package lists as they are now.
  cp "$work"/upper/var/cache/apt/archives/*.deb "$out/archives/"
  find "$work/root/var/lib/apt/lists" -maxdepth 1 -type f -name "*_Packages" -exec cp {} "$out/lists/" \;
  find "$work/root/var/lib/apt/lists" -maxdepth 1 -type f -name "*Release*" -exec cp {} "$out/lists/" \;
' bash "$runtime" "$work" "$out.tmp" $packages
rm -rf "$out"
mv "$out.tmp" "$out"
touch "$stamp"
echo "fetch-debs: $(ls "$out/archives" | wc -l) packages, $(du -sh "$out" | cut -f1)"
