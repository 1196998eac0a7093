# Scenic: build, demo and test entry points.  See README.md.
#   make setup   venv + Python packages, sao (npm), web root build/web
#   make demo    build the demo database if needed and serve it on :8000
#   make test    every test suite (needs root or Chromium already installed)
#   make notebooks  JupyterLab on 127.0.0.1:8888 on the demo database
#   make ha-demo a local Patroni + etcd cluster in var/ha (README "High availability")
SHELL := /bin/bash
PYTHON := .venv/bin/python

.PHONY: all setup demo test browser-deps clean distclean notebooks ha-demo
all: setup

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PYTHON) scripts/demo.py

# The analysts' notebooks (notebooks/) on the demo database and its
# simulated history (built like `make demo` does, if missing).
notebooks: setup
	@[ -f var/db/demo.sqlite ] || $(PYTHON) scripts/demo.py --no-serve
	@SCENIC_ANALYTICS_DB="$${SCENIC_ANALYTICS_DB:-sqlite:///$(CURDIR)/var/db/demo.sqlite}" \
		.venv/bin/jupyter lab --ip 127.0.0.1 --port 8888 --no-browser \
		--notebook-dir notebooks

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
