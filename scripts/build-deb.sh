#!/bin/bash
# Builds dist/rnm_<VERSION>_amd64.deb from a release build (`make deb` runs `swift build -c release` first).
#
#   scripts/build-deb.sh [BUILD_DIR [OUT_DIR]]     defaults: .build/release dist
#
# The package carries the Swift runtime libraries the binaries need in /usr/lib/rnm/swift, found through
# RUNPATH ($ORIGIN-relative), so a Debian 12 without Swift runs them. Everything else comes from Debian
# (Depends, worked out by dpkg-shlibdeps). The version is the VERSION file, checked against
# `rnmd --version`. Layout and the reasons behind it: docs/packaging.md. Needs: dpkg-dev, patchelf,
# binutils (strip), fakeroot is not needed (dpkg-deb --root-owner-group).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${1:-.build/release}
OUT=${2:-dist}
umask 022

die() { echo "build-deb: $*" >&2; exit 1; }

VERSION=$(tr -d '[:space:]' < VERSION)
[[ $VERSION =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || die "VERSION '$VERSION' is not a Debian native version"
ARCH=$(dpkg --print-architecture)
[ "$ARCH" = amd64 ] || die "only amd64 is packaged (this is $ARCH)"
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

for f in rnmd rnmctl librnm-docker.so; do [ -f "$BUILD/$f" ] || die "$BUILD/$f is missing (swift build -c release)"; done
built=$("$BUILD/rnmd" --version)
[ "$built" = "$VERSION" ] || die "$BUILD/rnmd --version says '$built', VERSION says '$VERSION': rebuild"

# Reproducible timestamps: the last commit's time (dpkg-deb clamps file times to it; gzip -n adds none).
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DATE=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
STAGE=$(mktemp -d "$OUT/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
P=$STAGE/rnm
mkdir -p "$P/DEBIAN"

inst() { # inst MODE SRC DEST(relative to the package root)
    install -D -m "$1" "$2" "$P/$3"
}

# --- Binaries, the built-in plugin and the private Swift runtime ------------------------------------------
inst 0755 "$BUILD/rnmd" usr/sbin/rnmd
inst 0755 "$BUILD/rnmctl" usr/bin/rnmctl
inst 0644 "$BUILD/librnm-docker.so" usr/lib/rnm/plugins/docker.so

# Every library ldd resolves from the toolchain (not from Debian), for every shipped ELF file; ldd is
# already recursive, and the copied libraries are checked again below.
SWIFTLIB=usr/lib/rnm/swift
mkdir -p "$P/$SWIFTLIB"
toolchain_libs() {
    ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
        case "$lib" in
            /lib/*|/usr/lib/*|/lib64/*) ;;   # Debian's: a dependency, not shipped
            *) echo "$lib" ;;
        esac
    done
}
mapfile -t libs < <(toolchain_libs "$BUILD/rnmd" "$BUILD/rnmctl" "$BUILD/librnm-docker.so")
[ ${#libs[@]} -gt 0 ] || die "ldd found no Swift runtime libraries (is $BUILD a Swift build?)"
for lib in "${libs[@]}"; do
    case "$(basename "$lib")" in libswift*|libdispatch.so|libBlocksRuntime.so|libFoundation*|lib_Foundation*) ;;
        *) die "unexpected non-Debian library $lib: ship it deliberately or link it from Debian" ;;
    esac
    inst 0644 "$(readlink -f "$lib")" "$SWIFTLIB/$(basename "$lib")"
done

ELF_FILES=("$P/usr/sbin/rnmd" "$P/usr/bin/rnmctl" "$P/usr/lib/rnm/plugins/docker.so" "$P/$SWIFTLIB"/*.so)
# Debug information stays in the build tree; symbols the dynamic linker needs (.dynsym), Swift's
# metadata sections and the build IDs stay in the files.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "${ELF_FILES[@]}"

# RUNPATH: $ORIGIN-relative, so the files find the private runtime wherever /usr is. The runtime libraries
# keep the $ORIGIN they were built with (libBlocksRuntime needs nothing but libc).
patchelf --set-rpath '$ORIGIN/../lib/rnm/swift' "$P/usr/sbin/rnmd" "$P/usr/bin/rnmctl"
patchelf --set-rpath '$ORIGIN/../swift' "$P/usr/lib/rnm/plugins/docker.so"
for f in "$P/$SWIFTLIB"/*.so; do
    rp=$(patchelf --print-rpath "$f")
    case "$rp" in '$ORIGIN'|'') ;; *) patchelf --set-rpath '$ORIGIN' "$f" ;; esac
done
# Nothing may still point into the build machine's toolchain, and every staged file must resolve within
# the staged runtime plus Debian's directories.
for f in "${ELF_FILES[@]}"; do
    rp=$(patchelf --print-rpath "$f")
    [[ $rp != *opt* && $rp != /* ]] || die "$f: RUNPATH still points at $rp"
    [ "$(readelf -d "$f" | grep -c '(RPATH)')" -eq 0 ] || die "$f: has DT_RPATH (want DT_RUNPATH)"
done
missing=$(LD_LIBRARY_PATH= ldd "${ELF_FILES[@]}" 2>&1 | grep -E 'not found' || true)
[ -z "$missing" ] || die "unresolved libraries in the staged tree: $missing"
leaked=$(ldd "${ELF_FILES[@]}" | awk '$2 == "=>" {print $3}' | grep -vE "^($P/|/lib/|/usr/lib/|/lib64/)" || true)
[ -z "$leaked" ] || die "staged files still load libraries from outside the package and Debian: $leaked"

# --- Config (conffiles), systemd, sysusers, tmpfiles -----------------------------------------------------
inst 0644 pkg-files/config/default.yaml etc/rnm/config.yaml
for f in pkg-files/config/rules.d/*.nft; do inst 0644 "$f" "etc/rnm/rules.d/$(basename "$f")"; done
inst 0644 pkg-files/systemd/rnmd.service lib/systemd/system/rnmd.service
inst 0644 pkg-files/sysusers.d/rnm.conf usr/lib/sysusers.d/rnm.conf
inst 0644 pkg-files/tmpfiles.d/rnm.conf usr/lib/tmpfiles.d/rnm.conf

# --- Man pages, completions ------------------------------------------------------------------------------
mkdir -p "$P/usr/share/man/man8" "$P/usr/share/man/man1"
gzip -9n < pkg-files/man/rnmd.8 > "$P/usr/share/man/man8/rnmd.8.gz"
gzip -9n < pkg-files/man/rnmctl.1 > "$P/usr/share/man/man1/rnmctl.1.gz"
# bash sources its completions: the generated file's #! line has no use there.
mkdir -p "$P/usr/share/bash-completion/completions"
sed '1{/^#!/d}' pkg-files/completions/rnmctl.bash > "$P/usr/share/bash-completion/completions/rnmctl"
inst 0644 pkg-files/completions/rnmctl.zsh usr/share/zsh/vendor-completions/_rnmctl
inst 0644 pkg-files/completions/rnmctl.fish usr/share/fish/vendor_completions.d/rnmctl.fish

# --- Plugin SDK ------------------------------------------------------------------------------------------
inst 0644 Sources/RNMPluginABI/include/rnm_plugin.h usr/include/rnm/rnm_plugin.h
mkdir -p "$P/usr/lib/$MULTIARCH/pkgconfig"
sed 's|^prefix=.*|prefix=/usr|' pkg-files/pkgconfig/rnm-plugin.pc > "$P/usr/lib/$MULTIARCH/pkgconfig/rnm-plugin.pc"

# --- Docs ------------------------------------------------------------------------------------------------
DOC=usr/share/doc/rnm
for f in README.md docs/plugins.md docs/docker.md docs/architecture.md docs/packaging.md; do
    inst 0644 "$f" "$DOC/$(basename "$f")"
done
inst 0644 Plugins/example-c/example.c "$DOC/examples/example-c/example.c"
inst 0644 Plugins/example-c/Makefile "$DOC/examples/example-c/Makefile"
sed -e "s/@VERSION@/$VERSION/" -e "s/@DATE@/$DATE/" -e "s/@COMMIT@/$COMMIT/" pkg-files/debian/changelog \
    | gzip -9n > "$P/$DOC/changelog.gz"
# The Swift runtime's licence exception is reproduced from the toolchain the libraries were copied from.
SWIFT_LICENSE=$(readlink -f "$(dirname "${libs[0]}")/../../../share/swift/LICENSE.txt")
[ -f "$SWIFT_LICENSE" ] || die "cannot find the toolchain's LICENSE.txt for ${libs[0]}"
# The paragraph after the "Runtime Library Exception" heading, as a DEP-5 continuation (one space, "." for
# blank lines).
exception=$(sed -n '/Runtime Library Exception/,$p' "$SWIFT_LICENSE" | sed -e '1d' -e 's/^[[:space:]]*//' \
            | awk 'NF {seen = 1} seen' | sed -e 's/^$/./' -e 's/^/ /')
while [[ $exception == *$'\n .' ]]; do exception=${exception%$'\n .'}; done
[ -n "$exception" ] || die "no Runtime Library Exception in $SWIFT_LICENSE"
awk -v ex="$exception" '$0 == "@SWIFT_RUNTIME_EXCEPTION@" {print ex; next} {print}' pkg-files/debian/copyright \
    > "$P/$DOC/copyright"

# --- Control ---------------------------------------------------------------------------------------------
find "$P/etc" -type f | sed "s|^$P||" | sort > "$P/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "pkg-files/debian/$s" "$P/DEBIAN/$s"; done

# Depends: what the shipped ELF files need from Debian (the private runtime is in the package itself).
mkdir -p "$STAGE/debian"
printf 'Source: rnm\n\nPackage: rnm\nArchitecture: %s\n' "$ARCH" > "$STAGE/debian/control"
shlibs=$(cd "$STAGE" && dpkg-shlibdeps -O -l"$P/$SWIFTLIB" -e"${ELF_FILES[@]}" 2>"$STAGE/shlibdeps.log" \
         | sed -n 's/^shlibs:Depends=//p') || { cat "$STAGE/shlibdeps.log" >&2; die "dpkg-shlibdeps failed"; }
[ -n "$shlibs" ] || { cat "$STAGE/shlibdeps.log" >&2; die "dpkg-shlibdeps found no dependencies"; }
rm -rf "$STAGE/debian"
# procps: /bin/kill for ExecReload; passwd: groupadd in postinst where systemd-sysusers is missing.
DEPENDS="$shlibs, passwd, procps"

SIZE=$(du -k -s --apparent-size --exclude=DEBIAN "$P" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@DEPENDS@/$DEPENDS/" -e "s/@INSTALLED_SIZE@/$SIZE/" \
    pkg-files/debian/control > "$P/DEBIAN/control"

# Directories 0755, files as installed above; owner root:root inside the archive.
find "$P" -type d -exec chmod 0755 {} +
# md5sums of every file but the conffiles (dpkg keeps those itself), for debsums and dpkg --verify.
(cd "$P" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$P/DEBIAN/md5sums"
chmod 0644 "$P/DEBIAN/md5sums"
DEB="$OUT/rnm_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$P" "$DEB" >/dev/null
echo "$DEB"
