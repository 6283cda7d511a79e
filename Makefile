# trove-builder: `make image` builds a Trove guest image in the builder container.
SHELL := /bin/bash
.DEFAULT_GOAL := image

OS        ?= ubuntu
RELEASE   ?= noble
DEV_MODE  ?= false
GUEST_USER ?= ubuntu
OUTPUT    ?= images/trove-guest-$(OS)-$(RELEASE)$(if $(filter true,$(DEV_MODE)),-dev,).qcow2
BUILD_ARGS ?=

VENV      ?= .venv
PYTHON    ?= python3
TB        := $(VENV)/bin/trove-builder
BUILDER_IMAGE ?= trove-builder:latest
# The container engine: docker, or podman (a Podman-only host: builder image and builds through podman).
ENGINE    ?= docker
# The builder's base. Default: the digest-pinned debian:trixie in the Containerfile.
# Without a registry, `make builder-base` makes one locally and this points at it.
BUILDER_BASE ?= $(shell $(ENGINE) image inspect trove-builder-base:trixie >/dev/null 2>&1 && echo trove-builder-base:trixie)
DEBIAN_MIRROR ?= http://deb.debian.org/debian
PYTEST_ARGS ?=
# `make datastore-image`: a MariaDB image from Debian's packages, as a `docker save` archive (no registry).
DATASTORE_RECIPE ?= mariadb
DATASTORE_IMAGE ?= images/trove-builder-$(DATASTORE_RECIPE)-$(shell sed -n 's/^tag: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' containerfiles/datastore/$(DATASTORE_RECIPE)/image.yaml).tar

LOCK      ?= $(basename $(OUTPUT)).lock.json

IMAGE     ?= $(OUTPUT)
DATASTORE ?= mysql
VERSION   ?= 8.4
REGISTER_ARGS ?=

.PHONY: setup image lock image-locked builder builder-lock builder-unlocked builder-base datastore-image venv lint test test-fast bench bench-boot clean register

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

setup:  ## a fresh Debian host: packages, Docker engine, venv, builder image (root)
	bash scripts/setup-host.sh

builder-base:  ## Debian trixie base made locally (mmdebstrap | docker import), for hosts without a registry
	mmdebstrap --variant=minbase --include=ca-certificates trixie - $(DEBIAN_MIRROR) \
	  | $(ENGINE) import - trove-builder-base:trixie

datastore-image: venv  ## images/trove-builder-mariadb-10.11.tar: for --preload-image (mmdebstrap, root)
	@mkdir -p $(dir $(DATASTORE_IMAGE))
	$(VENV)/bin/python scripts/make-datastore-image.py containerfiles/datastore/$(DATASTORE_RECIPE) $(DATASTORE_IMAGE)

builder: venv  ## the builder image from containerfiles/builder.lock.json: the same image ID on any host, any day
	$(VENV)/bin/python -m builder.builderimage build --tag $(BUILDER_IMAGE) --engine $(ENGINE)

builder-lock: venv  ## re-resolve the builder's packages (containerfiles/builder-packages.txt) into its lock, deliberately
	$(VENV)/bin/python -m builder.builderimage lock

builder-unlocked:  ## the builder image from the Containerfile (live archive, not reproducible; the tests' fixture)
	$(ENGINE) build -f containerfiles/builder.Containerfile \
	  $(if $(BUILDER_BASE),--build-arg BASE=$(BUILDER_BASE),) -t $(BUILDER_IMAGE) .

image: venv  ## make image OS=ubuntu RELEASE=bionic [DEV_MODE=true] [GUEST_USER=ubuntu] [OUTPUT=...] [ENGINE=podman]
	@$(ENGINE) image inspect $(BUILDER_IMAGE) >/dev/null 2>&1 || $(MAKE) builder
	@mkdir -p $(dir $(OUTPUT))
	$(TB) build $(OS) $(RELEASE) $(DEV_MODE) $(GUEST_USER) $(OUTPUT) --builder-image $(BUILDER_IMAGE) --runtime $(ENGINE) $(BUILD_ARGS)

lock: venv  ## make lock OS=debian RELEASE=bookworm -> images/trove-guest-debian-bookworm.lock.json (and the cache filled)
	@$(ENGINE) image inspect $(BUILDER_IMAGE) >/dev/null 2>&1 || $(MAKE) builder
	@mkdir -p $(dir $(LOCK))
	$(TB) lock $(OS) $(RELEASE) $(DEV_MODE) $(GUEST_USER) -o $(LOCK) --builder-image $(BUILDER_IMAGE) --runtime $(ENGINE)

image-locked: venv  ## make image-locked LOCK=file.lock.json [OUTPUT=...] [BUILD_ARGS=--offline]: exactly what the lock names
	$(TB) build --lock $(LOCK) -o $(OUTPUT) --builder-image $(BUILDER_IMAGE) --runtime $(ENGINE) $(BUILD_ARGS)

lint: venv  ## ruff (style, imports, bugbear) and mypy (types): seconds
	$(VENV)/bin/ruff check builder tests scripts
	$(VENV)/bin/mypy

# pytest exits 5 when a selection (PYTEST_ARGS) holds no test of that kind: not a failure here.
# Workers (pytest-xdist): the unit tests mostly wait (brokers starting, subprocesses), so 4 share two
# cores well; the slow suite runs a file per worker (module fixtures stay whole), two at once, so a
# boot or a check runs while the other worker's build waits on the archive; the longest files first
# (tests/conftest.py, LONG_FIRST). UNIT_WORKERS=0 / SLOW_WORKERS=0 run in one process.
UNIT_WORKERS ?= 4
SLOW_WORKERS ?= 2
test: lint  ## fails fast: lint, then the unit tests, then the slow suite (real builds and boots)
	$(VENV)/bin/pytest -m "not slow" -n $(UNIT_WORKERS) $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(VENV)/bin/pytest -m "slow and not extended" -n $(SLOW_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-extended: venv  ## the slow tests CI's time leaves out (more boots, a concurrent-kill build): README, Tests
	$(VENV)/bin/pytest -m extended -n $(SLOW_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

register: venv  ## make register IMAGE=... DATASTORE=mysql VERSION=8.4 [REGISTER_ARGS="--default --os-cloud NAME"]: Glance + Trove
	$(TB) register $(IMAGE) --datastore $(DATASTORE) --version $(VERSION) $(REGISTER_ARGS)

test-fast: venv  ## unit tests only (a minute or two)
	$(VENV)/bin/pytest -m "not slow" -n $(UNIT_WORKERS) $(PYTEST_ARGS)

bench: venv  ## cold/warm/hook/agent builds of noble and bookworm -> bench/results.md and .json
	@docker image inspect $(BUILDER_IMAGE) >/dev/null 2>&1 || $(MAKE) builder
	$(VENV)/bin/python scripts/bench.py --builder-image $(BUILDER_IMAGE)

# The reference images (e.g. built from an older commit), named as `make image` names them.
REFERENCE ?= $(error REFERENCE=dir of reference images, e.g. make bench-boot REFERENCE=../images-from-main)
BENCH_RELEASES ?= noble,bookworm,bionic
BENCH_ROUNDS ?= 3
bench-boot: venv  ## make bench-boot REFERENCE=dir: boot images/ against REFERENCE/, alternating -> bench/boot-results.md and .json
	nice -n 5 $(VENV)/bin/python scripts/bench_boot.py --before-dir $(REFERENCE) --after-dir $(dir $(OUTPUT)) \
	  --releases $(BENCH_RELEASES) --rounds $(BENCH_ROUNDS)

clean:
	rm -rf images build .pytest_cache
