# Scenic: build, demo and test entry points.  See README.md.
#   make setup   venv + Python packages, sao (npm), web root build/web
#   make demo    build the demo database if needed and serve it on :8000
#   make test    every test suite (needs root or Chromium already installed)
SHELL := /bin/bash
PYTHON := .venv/bin/python

.PHONY: all setup demo test browser-deps clean distclean
all: setup

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PYTHON) scripts/demo.py

browser-deps:
	@bash scripts/ensure_chromium.sh

test: setup browser-deps
	@$(PYTHON) scripts/run_tests.py

# Generated files only; keeps .venv and web/node_modules.
clean:
	rm -rf build var test-artifacts .hypothesis

distclean: clean
	rm -rf .venv web/node_modules
