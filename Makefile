# Muster: `make run` starts the embedded single-node server, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WEB    := clients/web

.PHONY: install node web run test test-services lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Node.js with npm (installed here when missing): the web clients' vendor files and the
## official JavaScript clients in the tests come from npm lock files.
node:
	@{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || { \
	  echo "installing nodejs and npm"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }

## The web clients' vendor files (clients/web/node_modules, not committed), installed from
## clients/web/package-lock.json again whenever the lock file is newer than the install.
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json | node
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web: $(WEB)/node_modules/.package-lock.json

## Start Muster on the embedded default (SQLite file, in-process sockets, local disk).
## An empty database is filled with a demo county and its logins are printed.
## The web clients are at http://127.0.0.1:8080/ (console at /console, responders at /m).
run: install web
	$(BIN)/python -m server run --demo $(ARGS)

## What the tests start or run themselves: redis-server, Node.js with npm for the official
## JavaScript clients, ClamAV's daemon (started by the tests with their own signature file,
## no download), Chromium for the browser tests and a Chinese font so that their screenshots show
## the zh-CN interface (installed here when missing).
test-services: node
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	@{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || { \
	  echo "installing nginx (tests/cluster/test_topology.py runs docker/nginx.conf on loopback)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nginx >/dev/null; }
	@{ command -v clamd >/dev/null 2>&1 || [ -x /usr/sbin/clamd ]; } || { \
	  echo "installing clamav-daemon"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq clamav-daemon >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@{ [ -d /usr/share/fonts/truetype/wqy ] || [ -n "$$(fc-list :lang=zh family 2>/dev/null)" ]; } || { \
	  echo "installing a Chinese font (fonts-wqy-microhei)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq fonts-wqy-microhei >/dev/null; }

test: install test-services web
	$(BIN)/python -m pytest $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
