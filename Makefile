# The two commands of the README. Both start from a fresh machine.
#   make serve — set up, build what is needed, and run mechscope on the shipped model organism
#   make test  — set up (dev deps and every tool the tests need) and run every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
PROMPT ?= When Mary and John went to the store, John gave a drink to

.PHONY: serve test setup setup-dev

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned, so nothing pulls a CUDA build.
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# Test-only tools: Azurite (Azure Blob emulator) from npm.
$(VENV)/azurite/.installed: $(VENV)/.installed
	npm install --silent --no-audit --no-fund --prefix $(VENV)/azurite azurite@3
	touch $@

setup: $(VENV)/.installed

setup-dev: setup $(VENV)/azurite/.installed

serve: setup
	$(VENV)/bin/mechscope run "$(PROMPT)"
	$(VENV)/bin/mechscope datasets ensure-organism --out data/datasets
	$(VENV)/bin/mechscope serve

test: setup-dev
	$(PY) -m pytest -q
