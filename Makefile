# Drover. `make test` installs everything the tests need (Debian packages, a Consul agent
# built from the Go module proxy, test golden images) and runs every test; `make demo`
# runs Drover against local real components. Every step is idempotent.

SHELL      := /bin/bash
GO         ?= go
BIN        := bin
CACHE      ?= $(CURDIR)/.cache
VERSION    ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -X main.version=$(VERSION)
# -p 1: the packages share one libvirtd and two cores; run their VM tests one package at a time.
TEST_FLAGS ?= -count=1 -p 1 -timeout 75m
export DROVER_TESTENV_CACHE := $(CACHE)

# Debian packages: QEMU and libvirt for the VMs, libvirt-dev and pkg-config for the cgo
# bindings, busybox-static and cpio for the test guests, git and OpenSSH for the real git
# servers the tests run (git daemon, git http-backend, sshd); systemd (systemd-analyze),
# vagrant and vagrant-libvirt to check dist/drover.service and the Vagrantfile; nodejs to
# check the fleet schema's patterns as editors (ECMA-262) read them; prometheus (promtool)
# and chromium for the metrics and dashboard tests; iproute2 and dnsmasq-base for the
# network tests (a bridge and DHCP inside a namespace the test makes); ovmf for UEFI disk
# boots; mmdebstrap, extlinux, fdisk and e2fsprogs for the Debian cloud-init test image,
# syslinux and mtools for the tiny BIOS/UEFI test disk.
APT_PACKAGES := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu \
	libvirt-clients libvirt-dev pkg-config busybox-static cpio util-linux gcc git ca-certificates \
	openssh-server openssh-client gnupg \
	systemd vagrant vagrant-libvirt nodejs \
	prometheus chromium \
	iproute2 dnsmasq-base \
	ovmf mmdebstrap extlinux syslinux syslinux-common mtools fdisk e2fsprogs

.PHONY: all build deps testenv test fuzz bench demo demo-clean vet clean FORCE

all: build

build: $(BIN)/drover

$(BIN)/drover: FORCE
	$(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/drover

$(BIN)/drover-testenv: FORCE
	$(GO) build -o $@ ./testenv/cmd/drover-testenv

FORCE:

## deps: install the Debian packages (skips apt entirely when all are present)
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

## testenv: build the Consul agent and the test images, start libvirtd
testenv: deps $(BIN)/drover-testenv
	$(BIN)/drover-testenv consul -build-only
	$(BIN)/drover-testenv images
	$(BIN)/drover-testenv libvirtd

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

## test: install what the tests need, then run every test against the real components
test: testenv vet
	$(GO) test $(TEST_FLAGS) ./...
	$(MAKE) fuzz

## fuzz: a short run of the fleet parser's fuzzer, seeded with hostile inputs (alias bombs, huge strings)
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./sources

## bench: the performance figures (see README)
bench: testenv
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

## demo: Consul, libvirtd and a demo fleet repository, then `drover run` against them
demo: deps build $(BIN)/drover-testenv
	$(BIN)/drover-testenv demo -drover $(BIN)/drover -dir $(CACHE)/demo

## demo-clean: destroy the demo's VMs and state
demo-clean: $(BIN)/drover-testenv
	$(BIN)/drover-testenv demo -clean -dir $(CACHE)/demo

clean:
	rm -rf $(BIN)
