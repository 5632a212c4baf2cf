# The two commands a new user needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test-deps demo test test-unit bench clean

setup: $(STAMP)

# torch==2.13.0 first: on the project's dev/CI machines that is the CPU wheel lying on disk
# (any other spec may pull a multi-GB CUDA build); elsewhere it is the normal PyPI torch. It is the
# cluster image's torch too (TORCH_VERSION in cluster/Dockerfile; tests/unit/test_cluster_configs.py).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

demo: setup
	$(PY) pipeline/run.py --config pipeline/configs/demo.yaml --output out/demo

# The web page's browser test (tests/services/test_serve.py) drives Debian's chromium through
# chromium-driver: installed with apt when either is missing (as root, or with sudo), else nothing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; }

# Everything: tests/unit, tests/ray (local Ray), tests/services (moto S3, MLflow, colorize serve +
# a headless browser), tests/e2e (clusters, sweeps).
test: setup test-deps
	$(PY) -m pytest -q -ra --timeout=900 tests

# The fast group only: no Ray, no servers, under a minute.
test-unit: setup
	$(PY) -m pytest -q -ra --timeout=120 tests/unit

bench: setup
	$(PY) bench/preprocess.py
	$(PY) bench/priors_scaling.py

clean:
	rm -rf $(VENV) out .pytest_cache
