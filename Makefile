# Scenic: build, demo and test entry points.  See README.md.
#   make setup   venv + Python packages, sao (npm), web root build/web
#   make demo    build the demo database if needed and serve it on :8000
#   make test    every test suite (needs root or Chromium already installed)
#   make ha-demo a local Patroni + etcd cluster in var/ha (README "High availability")
SHELL := /bin/bash
PYTHON := .venv/bin/python

.PHONY: all setup demo test browser-deps clean distclean ha-demo
all: setup

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PYTHON) scripts/demo.py

ha-demo: setup
	@$(PYTHON) scripts/hacluster.py up --dir var/ha --port $${HA_PORT:-21200}

browser-deps:
	@bash scripts/ensure_chromium.sh

test: setup browser-deps
	@$(PYTHON) scripts/run_tests.py

# Generated files only; keeps .venv and web/node_modules.
clean:
	rm -rf build var test-artifacts .hypothesis

distclean: clean
	rm -rf .venv web/node_modules
