#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make deb`: the Debian package, from what `make dist` built (DIST holds the sdist and the wheel).
# The sdist is unpacked, packaging/debian becomes its debian/ and the wheel goes into its dist/;
# dpkg-buildpackage then runs debhelper (debian/rules installs the wheel with python3-installer).
# Offline: everything comes from Debian packages (scripts/install-deps.sh) and the two files.
set -euo pipefail
dist=$(cd "${1:?usage: make-deb.sh DIST}" && pwd)
sdist=$(ls "$dist"/airlock-*.tar.gz)
wheel=$(ls "$dist"/airlock-*-py3-none-any.whl)
for tool in dpkg-buildpackage dh dh_python3; do
  command -v "$tool" >/dev/null || { echo "make-deb: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }
done
work=$(mktemp -d "$dist/.deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
src=$(echo "$work"/airlock-*)
cp -r "$src/packaging/debian" "$src/debian"
# The package's upstream version is the sdist's (airlock.__version__): refuse a stale changelog.
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
if [ "${version%-*}" != "${src##*/airlock-}" ]; then
  echo "make-deb: debian/changelog says $version, the sdist is ${src##*/}" >&2; exit 1
fi
mkdir "$src/dist"
cp "$wheel" "$src/dist/"
(cd "$src" && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -b -us -uc --no-sign >"$work/build.log" 2>&1) || {
  echo "make-deb: dpkg-buildpackage failed:" >&2; tail -30 "$work/build.log" >&2; exit 1; }
mv "$work"/airlock_*_all.deb "$dist/"
ls "$dist"/airlock_*_all.deb
