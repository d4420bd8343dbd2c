# 3D Grad-CAM Studio. `make run` and `make test` are all a newcomer needs (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast test-browser install install-dev lint migrate demo bench bench-load clean

# Runtime dependencies only (what `make run` needs); tests, lint and benchmarks add the
# development set on top (requirements-dev.txt).
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

migrate: $(STAMP)
	DEBUG=1 $(PY) manage.py migrate --noinput

demo: migrate
	DEBUG=1 $(PY) manage.py make_demo

# Web server and one worker cluster; Ctrl-C stops both.
run: demo
	DEBUG=1 HOST=$(HOST) PORT=$(PORT) $(PY) manage.py run_studio --host $(HOST) --port $(PORT)

# Engine children that parse uploads run in a bubblewrap sandbox (Debian: apt-get install
# bubblewrap). Without it, `make run` (a development set-up, DEBUG=1) runs them unsandboxed
# and says so loudly; production refuses to start without it.
ifeq ($(GRADCAM_SANDBOX),)
# Probed by running it, not only by looking for it: bwrap may be installed where user namespaces
# are not allowed.
ifeq ($(shell bwrap --ro-bind / / --dev /dev true 2>/dev/null && echo works),)
run demo migrate: export GRADCAM_SANDBOX := off
ifneq ($(filter run demo,$(MAKECMDGOALS)),)
$(warning bubblewrap (bwrap) is not installed or cannot run here: uploaded files are parsed WITHOUT a sandbox. Install it: apt-get install bubblewrap)
endif
endif
endif

# Every test: engine, web, worker and browser tests. Browser tests need Debian's chromium
# (/usr/bin/chromium); without it they fail with a message saying so.
test: $(DEV_STAMP)
	$(PY) -m pytest

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -m "not browser and not slow"

test-browser: $(DEV_STAMP)
	$(PY) -m pytest -m browser

# ruff (lint and format check) and mypy, configured in pyproject.toml. mypy's django-stubs
# plugin imports gradcam_site.settings, which without a SECRET_KEY loads only with DEBUG=1.
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy

bench: $(DEV_STAMP)
	$(PY) bench/engine.py
	$(PY) bench/latency.py

# 50 users against gunicorn and a worker cluster on loopback (about 5 minutes; see README).
bench-load: $(DEV_STAMP)
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) var .pytest_cache
	find media -mindepth 1 ! -name .gitkeep -delete 2>/dev/null || true  # media/ itself is kept in git
