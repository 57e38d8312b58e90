#!/bin/bash
# Lays out a fresh Debian 12 (bookworm) minbase chroot in DIR for the package tests: Debian's own packages
# from Debian's mirror, nothing of Swift. debootstrap runs once per machine; its result is kept as a
# tarball in /var/cache/rnm-package-test and unpacked for every run (RNM_CHROOT_CACHE overrides the
# directory). Needs root, debootstrap, zstd.
#
#   Tests/package/make-chroot.sh DIR
set -euo pipefail
DIR=${1:?usage: make-chroot.sh DIR}
SUITE=bookworm
MIRROR=${RNM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${RNM_CHROOT_CACHE:-/var/cache/rnm-package-test}
TARBALL=$CACHE/$SUITE-minbase.tar.zst

secs() { echo $(( $(date +%s%N) / 1000000 )); }

mkdir -p "$CACHE" "$DIR"
if [ ! -s "$TARBALL" ]; then
    t0=$(secs)
    work=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    if ! debootstrap --variant=minbase "$SUITE" "$work/root" "$MIRROR" > "$work/log" 2>&1; then
        tail -20 "$work/log" >&2
        echo "make-chroot: debootstrap failed" >&2
        exit 1
    fi
    # Keep the tarball small and neutral: no downloaded .debs, no apt lists.
    rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
    tar -C "$work/root" --numeric-owner -cf - . | zstd -q -T0 -3 > "$work/root.tar.zst"
    mv "$work/root.tar.zst" "$TARBALL"
    echo "make-chroot: debootstrap --variant=minbase $SUITE took $(( ($(secs) - t0) / 1000 )) s; cached in $TARBALL"
fi

t0=$(secs)
zstd -q -dc "$TARBALL" | tar -C "$DIR" --numeric-owner -xpf -
# The network settings and Debian's sources of this machine (the tarball may come from an earlier run).
cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$DIR/etc/apt/sources.list.d/debian.sources"
    rm -f "$DIR/etc/apt/sources.list"
fi
echo "make-chroot: unpacked in $DIR in $(( $(secs) - t0 )) ms"
