# rmapfs -- build, test and benchmark.
#
#   make setup   everything a fresh machine needs (as root): Debian packages,
#                npm packages, the addon, the TypeScript, `rmapfs` on the PATH,
#                then the main job (`make run`): a 1 GiB image mounted at ./mnt
#   make run     make (if needed) rmapfs.img, mount it at ./mnt; make stop unmounts
#   make         build the addon and the TypeScript
#   make test    every test: the tap suite, then the regression suite's quick group (test/all)
#   make bench   every benchmark; make bench-NAME runs bench/NAME alone

SHELL := /bin/bash
NPX := npx --no-install
# libfuse 3 (fuse3: fusermount3 and /etc/fuse.conf; it replaces Debian's `fuse`, libfuse 2's tools) for the
# daemon; libfuse2 the library alone stays for fuse-native and fuse2fs (bench peers).
DEB_PACKAGES := build-essential python3 fuse3 libfuse3-dev libfuse2 pkg-config rsync acl fio xfsprogs
PREFIX ?= /usr/local
BENCHES := $(notdir $(wildcard bench/*))
TS_SOURCES := $(shell find src test bench -name '*.ts' 2>/dev/null)
ADDON := build/Release/rmapfs_native.node

.PHONY: all setup node-version deps install build addon test run stop bench clean distclean $(addprefix bench-,$(BENCHES))

all: build

IMAGE ?= rmapfs.img
MNT ?= mnt

setup: node-version deps node_modules build install run

# The main job: a default filesystem, mounted and ready to use.
run: build
	@if [ ! -e $(IMAGE) ]; then bin/rmapfs mkfs --size 1G $(IMAGE); fi
	@mkdir -p $(MNT)
	@if grep -q " $(CURDIR)/$(MNT) " /proc/self/mountinfo; then echo "$(MNT) is already mounted"; \
	else bin/rmapfs mount $(IMAGE) $(MNT); fi
	@echo
	@echo "rmapfs: $(IMAGE) is mounted at ./$(MNT)"
	@echo "  use it:      cp -r /etc ./$(MNT)/ && ls ./$(MNT)"
	@echo "  check it:    rmapfs umount ./$(MNT) && rmapfs check $(IMAGE)   (offline)"
	@echo "  unmount it:  rmapfs umount ./$(MNT)   (or: make stop)"
	@echo "  mount again: rmapfs mount $(IMAGE) ./$(MNT)   (or: mount -t fuse.rmapfs $(IMAGE) ./$(MNT))"

stop:
	@if grep -q " $(CURDIR)/$(MNT) " /proc/self/mountinfo; then bin/rmapfs umount $(MNT); fi

# Node.js 20 or later (Debian 12's own is 18): checked first, installed when missing and we are root.
node-version:
	@scripts/ensure-node

# Debian packages: the C++ toolchain for the addon, libfuse 3 for the FUSE daemon (see DEB_PACKAGES).
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

node_modules: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	@touch node_modules

build: $(ADDON) dist/.stamp

addon: $(ADDON)

$(ADDON): node_modules binding.gyp $(wildcard native/*.cc native/*.h)
	$(NPX) node-gyp rebuild --loglevel=warn

dist/.stamp: node_modules tsconfig.json $(TS_SOURCES)
	rm -rf dist
	$(NPX) tsc -p .
	@touch $@

install: build
	ln -sf $(CURDIR)/bin/rmapfs $(PREFIX)/bin/rmapfs
	ln -sf $(CURDIR)/bin/mount.fuse.rmapfs /sbin/mount.fuse.rmapfs
	ln -sf $(CURDIR)/bin/fsck.rmapfs /sbin/fsck.rmapfs
	ln -sf $(CURDIR)/bin/mkfs.rmapfs /sbin/mkfs.rmapfs

test: build
	test/all

bench: $(addprefix bench-,$(BENCHES))

$(addprefix bench-,$(BENCHES)): bench-%: build
	node --expose-gc dist/bench/$*/main.js $(BENCH_ARGS)

clean:
	rm -rf dist build

distclean: clean
	rm -rf node_modules
