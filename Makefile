# rnm — see README.md. Every target that needs root says so; all of them install their Debian packages.
SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= /usr/bin/python3

# Debian packages: C libraries we link, the tools the tests and the demo drive.
DEB_PACKAGES := pkg-config libmnl-dev libnftnl-dev libnftables-dev libyaml-dev nftables iproute2 procps \
                iputils-ping python3 python3-pytest python3-yaml gcc libc6-dev docker.io busybox-static

# Building the Debian package (make deb) and testing it in a fresh Debian 12 chroot (make package).
DEB_BUILD_PACKAGES := dpkg-dev patchelf binutils
DEB_TEST_PACKAGES := debootstrap zstd lintian python3-seccomp python3-pytest python3-yaml man-db systemd nftables
VERSION := $(shell tr -d '[:space:]' < VERSION)
DEB := dist/rnm_$(VERSION)_amd64.deb

# Where `make install-sdk` puts the plugin header and its pkg-config file (DESTDIR for staging).
PREFIX ?= /usr/local


.PHONY: all deps deps-all build release demo test unit integration checks package deb bench man completions install-sdk clean

all: build

deps:
	@scripts/install-deps.sh $(DEB_PACKAGES)

# Everything `make test` needs, packaging included (what CI installs first).
deps-all:
	@scripts/install-deps.sh $(DEB_PACKAGES) $(DEB_BUILD_PACKAGES) $(DEB_TEST_PACKAGES)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Runs rnmd with the default config in a throwaway network namespace; never touches the host's network.
demo: build
	scripts/demo.sh .build/debug/rnmd

# Every test: unit tests (pure core, config, netlink codec, reconciler on fakes), the source checks, the
# root integration tests, each in its own network namespace against the real kernel, and the package test.
test: build checks unit integration package

unit:
	$(SWIFT) test

checks:
	scripts/check-sources.sh

integration:
	cd Tests/integration && RNMD=$(CURDIR)/.build/debug/rnmd $(PYTHON) -m pytest -q

# rnm_<VERSION>_amd64.deb from the release build (docs/packaging.md).
deb: release
	@scripts/install-deps.sh $(DEB_BUILD_PACKAGES)
	scripts/build-deb.sh .build/release dist

# The .deb in a fresh Debian 12 chroot (debootstrap, cached in /var/cache/rnm-package-test): lintian,
# install, ldd, --check, the unit, the SDK, rnmd confined like the unit, removal. Needs root.
package: deb
	@scripts/install-deps.sh $(DEB_TEST_PACKAGES)
	cd Tests/package && RNM_DEB=$(CURDIR)/$(DEB) $(PYTHON) -m pytest -q

bench: release
	scripts/bench.sh

# The plugin SDK for out-of-tree plugins: rnm_plugin.h and rnm-plugin.pc (`pkg-config --cflags rnm-plugin`).
install-sdk:
	install -D -m 0644 Sources/RNMPluginABI/include/rnm_plugin.h $(DESTDIR)$(PREFIX)/include/rnm/rnm_plugin.h
	install -d $(DESTDIR)$(PREFIX)/share/pkgconfig
	sed 's|^prefix=.*|prefix=$(PREFIX)|' pkg-files/pkgconfig/rnm-plugin.pc > $(DESTDIR)$(PREFIX)/share/pkgconfig/rnm-plugin.pc
	chmod 0644 $(DESTDIR)$(PREFIX)/share/pkgconfig/rnm-plugin.pc

# Regenerates the committed rnmctl man page and shell completions from the command definitions.
man: build
	$(SWIFT) package --allow-writing-to-package-directory generate-manual --configuration debug \
	    --date $$(git log -1 --format=%cs) --output-directory pkg-files/man

completions: build
	mkdir -p pkg-files/completions
	for sh in bash zsh fish; do .build/debug/rnmctl --generate-completion-script $$sh > pkg-files/completions/rnmctl.$$sh; done

clean:
	rm -rf .build dist
