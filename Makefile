# Quickstart targets: each works on a fresh machine with only python3 (>= 3.11).
PYTHON ?= python3
PORT ?= 8080
VENV := .venv
PIP := $(VENV)/bin/pip
STAMP_EXAMPLES := $(VENV)/.examples-installed
STAMP_TEST := $(VENV)/.test-installed
# Real outside parts the tests run: Prometheus and promtool, Alertmanager, Chromium (Debian packages).
DEBIAN_TEST_PACKAGES := prometheus prometheus-alertmanager chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench clean test-tools

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP_EXAMPLES): $(VENV)/bin/python pyproject.toml
	$(PIP) install --quiet -e '.[examples]'
	touch $@

$(STAMP_TEST): $(VENV)/bin/python pyproject.toml
	$(PIP) install --quiet -e '.[test]'
	touch $@

demo: $(STAMP_EXAMPLES)  ## serve examples/digits with 2 replicas on PORT (Ctrl-C stops everything)
	$(VENV)/bin/steady serve examples/digits --replicas 2 --port $(PORT)

test-tools:  ## Debian packages the tests start (skipped when already installed)
	@command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null && command -v chromium >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y --no-install-recommends $(DEBIAN_TEST_PACKAGES) >/dev/null \
	  || { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends $(DEBIAN_TEST_PACKAGES) >/dev/null; }; }

test: $(STAMP_TEST) test-tools  ## the whole test suite
	$(VENV)/bin/python -m pytest -q --durations=25

bench: $(STAMP_TEST)  ## throughput/latency figures -> bench/out/RESULTS.md (installs wrk, nginx)
	$(VENV)/bin/python bench/run.py

clean:
	rm -rf $(VENV) .steady bench/out
