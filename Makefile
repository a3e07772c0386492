# The two commands of the README. Both start from a fresh machine.
#   make serve — set up, build the viewer and the organism's datasets, run mechscope serve
#   make test  — set up (dev deps, Azurite, Chromium, the viewer) and run every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
VIEWER := neuron_viewer
VIEWER_SRC := $(shell find $(VIEWER)/src -type f 2>/dev/null) $(VIEWER)/index.html $(VIEWER)/vite.config.ts \
              $(VIEWER)/tsconfig.json $(VIEWER)/openapi.json

.PHONY: serve test setup setup-dev viewer test-viewer

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned, so nothing pulls a CUDA build.
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev,distributed]"
	touch $@

# Test-only tools: Azurite (Azure Blob emulator) from npm; Debian's Chromium for the browser tests.
$(VENV)/azurite/.installed: $(VENV)/.installed
	npm install --silent --no-audit --no-fund --prefix $(VENV)/azurite azurite@3
	touch $@

/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(VIEWER)/node_modules/.installed: $(VIEWER)/package.json $(VIEWER)/package-lock.json
	cd $(VIEWER) && npm ci --no-audit --no-fund --silent
	touch $@

$(VIEWER)/dist/index.html: $(VIEWER)/node_modules/.installed $(VIEWER_SRC)
	cd $(VIEWER) && npm run --silent build

setup: $(VENV)/.installed

setup-dev: setup $(VENV)/azurite/.installed /usr/bin/chromium viewer

viewer: $(VIEWER)/dist/index.html

serve: setup viewer
	$(VENV)/bin/mechscope datasets ensure-organism --out data/datasets
	$(VENV)/bin/mechscope explain --dataset data/datasets/organism  # offline explanations; instant when done
	$(VENV)/bin/mechscope serve

test-viewer: setup-dev
	cd $(VIEWER) && npm run --silent check:api && npm test --silent
	$(PY) scripts/export_openapi.py --check
	MECHSCOPE_PYTHON=$(PY) node --test --test-concurrency=1 tests/e2e/viewer.e2e.test.mjs tests/e2e/viewer_round2.e2e.test.mjs \
	    tests/e2e/explanations.e2e.test.mjs tests/e2e/exact_effects.e2e.test.mjs

# pytest runs last so its summary closes the output.
test: setup-dev test-viewer
	$(PY) -m pytest -q
