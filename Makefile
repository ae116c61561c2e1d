# Two commands matter: `make demo` and `make test`. Both work on a fresh Debian machine with
# Python 3.11; they install what they need (system packages through apt as root, Python
# packages into .venv).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: xmlsec1 is what pysaml2 signs and verifies with; postgresql and nginx are
# the real database and proxy of the multi-node tests (tests/test_multinode.py starts both);
# chromium is the real browser of the browser tests (driven by Playwright, which never downloads
# a browser of its own); docker-compose (1.29, needs no Docker engine for `config`) validates
# docker/compose.yml in tests/test_containers.py; systemd's systemd-analyze checks the service
# unit in tests/test_systemd.py (it needs no running systemd).
# The interop peers of tests/interop, SPs nobody here wrote, each in a private apache2: Shibboleth
# SP 3 (mod_shib, and shibd from shibboleth-sp-utils) and SimpleSAMLphp 1.19 under mod_php, plus
# what it does not depend on: php-cli for its metadata converter, php-xml (DOM) and php-mbstring,
# both of which its own configuration check marks required.
SYSTEM_PACKAGES := xmlsec1 softhsm2 libcairo2 postgresql nginx chromium docker-compose systemd \
	apache2 libapache2-mod-shib shibboleth-sp-utils \
	simplesamlphp libapache2-mod-php php-cli php-xml php-mbstring nodejs
# The peer IdP of benchmarks/peers.py (and its smoke test, tests/test_peer_benchmark.py): the same
# SimpleSAMLphp with its authX509 module, run by php-fpm behind nginx, and the LDAP directory
# (slapd) that module looks cards up in.
SYSTEM_PACKAGES += php-fpm php-ldap slapd
# axe-core (npm, pinned by package-lock.json) for the browser tests' accessibility checks.
BROWSER_TESTS := tests/browser
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test fuzz lint format system-packages venv lock node-packages clean

# Every Python package .venv gets is pinned with its hashes in requirements.lock (runtime
# dependencies and the test extra, resolved for Python 3.11 on Linux x86_64); the project itself
# is installed editable on top, without letting pip pick anything else.
LOCK := requirements.lock
# The runtime dependencies alone, at the same versions: what docker/Dockerfile installs.
RUNTIME_LOCK := docker/requirements.lock
PIP_COMPILE := --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links
# pip-tools, in a venv of its own so it never changes what .venv holds.
PIP_TOOLS := pip-tools==7.7.0
LOCK_TOOLS := $(VENV)/lock-tools

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(BIN)/.installed

# Regenerates both locks from pyproject.toml, keeping every pin that still satisfies it
# (`make lock LOCK_FLAGS=--upgrade` takes the newest releases pyproject allows). Run it after
# changing a dependency: tests/test_lock.py fails while a lock and pyproject disagree.
lock:
	[ -x $(LOCK_TOOLS)/bin/pip-compile ] || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
	  $(LOCK_TOOLS)/bin/pip install --quiet '$(PIP_TOOLS)'; }
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile $(PIP_COMPILE) --extra test \
	  $(LOCK_FLAGS) --output-file $(LOCK) pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile $(PIP_COMPILE) \
	  --constraint $(LOCK) --output-file $(RUNTIME_LOCK) pyproject.toml

$(BROWSER_TESTS)/node_modules/.installed: $(BROWSER_TESTS)/package.json $(BROWSER_TESTS)/package-lock.json
	cd $(BROWSER_TESTS) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

node-packages: $(BROWSER_TESTS)/node_modules/.installed

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# Debian's nodejs comes without npm; a nodejs package that bundles npm conflicts with Debian's.
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends npm; }

test: system-packages venv node-packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

# The adversarial suite with many times the examples `make test` tries (the Hypothesis `fuzz`
# profile, tests/adversarial/conftest.py); it ends with the figures: examples tried, server
# errors seen. Each test may take far longer than the suite's usual per-test timeout.
fuzz: system-packages venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -o timeout=7200 tests/adversarial

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: system-packages venv
	$(BIN)/python -m sp_demo.demo

clean:
	rm -rf $(VENV) var .pytest_cache $(BROWSER_TESTS)/node_modules
