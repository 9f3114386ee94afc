#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build, idempotently, airlock's QEMU update guest (issue #7) under $AIRLOCK_CACHE/guest:
#   vmlinuz       a Debian 12 kernel (newest linux-image-6.1.0-N-amd64, unpacked with dpkg -x)
#   initrd.img    busybox-static + the virtio / 9p / virtio_console / virtio_net modules in load order + init
#   root          -> the default runtime's Debian tree (trixie) from scripts/make-runtime.sh, shared
#                    READ-ONLY by 9p (the fetcher can boot another runtime's root: docs/vm.md);
#                    the guest builds a throwaway tmpfs root around it, so nothing here or in the
#                    runtime tree is ever modified by a guest.
# Runs as root on Debian 12 with only the package registries.  A stamp keyed on this script and the
# init script skips all work on later runs; the kernel download is cached separately.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/src/airlock/layout.env"
cache=${AIRLOCK_CACHE:-$AIRLOCK_CACHE_DEFAULT}
out="$cache/$GUEST_DIR"
dir_var=RUNTIME_${RUNTIME_DEFAULT}_DIR stamp_var=RUNTIME_${RUNTIME_DEFAULT}_STAMP
runtime="$cache/${!dir_var}"
init_src="$here/src/airlock/lab/guest/init"
# virtio_net has no device since ADR 0172 (the guest has no NIC); it stays for the tests that
# give the guest the old NIC back (the negative control of test_qemu_unprivileged.py).
modules=(virtio_pci 9p 9pnet_virtio virtio_net virtio_console)

key=$(cat "$0" "$init_src" "$here/src/airlock/layout.env" | sha256sum | cut -c1-16)
stamp="$out/$GUEST_STAMP_PREFIX$key"
if [ -f "$stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "make-guest: must run as root" >&2
  exit 1
fi
if [ ! -f "$runtime/${!stamp_var}" ] || [ ! -x "$runtime/usr/bin/python3" ]; then
  echo "make-guest: the default runtime ($RUNTIME_DEFAULT) is missing; run scripts/make-runtime.sh first" >&2
  exit 1
fi
for tool in apt-get apt-cache dpkg depmod modprobe cpio gzip; do
  command -v "$tool" >/dev/null || { echo "make-guest: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "make-guest: busybox-static missing (scripts/install-deps.sh)" >&2; exit 1; }

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. The kernel: the newest bookworm 6.1 ABI, unpacked once per version.
kpkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -1)
if [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -1)
fi
[ -n "$kpkg" ] || { echo "make-guest: no linux-image-6.1.0-N-amd64 package found" >&2; exit 1; }
kver=${kpkg#linux-image-}
kdir="$out/kernel-$kver"
if [ ! -f "$kdir/.complete" ]; then
  echo "make-guest: downloading $kpkg"
  rm -rf "$kdir" && mkdir -p "$kdir"
  (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >/dev/null)
  dpkg -x "$work"/"$kpkg"_*.deb "$kdir/tree"
  rm -f "$work"/"$kpkg"_*.deb
  depmod -b "$kdir/tree" "$kver"
  touch "$kdir/.complete"
fi
# Drop other (older) unpacked kernels.
for d in "$out"/kernel-*; do
  [ "$d" = "$kdir" ] || rm -rf "$d"
done

# 2. The initramfs: busybox, the modules in load order (from modprobe's dependency walk), init.
ird="$work/initrd"
mkdir -p "$ird"/{bin,dev,proc,sys,modules}
cp /bin/busybox "$ird/bin/busybox"
cp "$init_src" "$ird/init"
chmod 0755 "$ird/init"
: >"$ird/modules/order"
for m in "${modules[@]}"; do
  modprobe -d "$kdir/tree" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  base=$(basename "$ko")
  grep -qx "$base" "$ird/modules/order" && continue
  cp "$ko" "$ird/modules/$base"
  echo "$base" >>"$ird/modules/order"
done
(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -6) >"$work/initrd.img"

# 3. Install atomically-enough: each file by rename, the stamp last.
cp "$kdir/tree/boot/vmlinuz-$kver" "$work/vmlinuz"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/initrd.img" "$out/initrd.img"
echo "$kver" >"$out/kernel-version"
ln -sfn "$runtime" "$out/root"
rm -f "$out/$GUEST_STAMP_PREFIX"*
touch "$stamp"
echo "make-guest: guest ready in $out (kernel $kver, $(wc -l <"$ird/modules/order") modules)"
