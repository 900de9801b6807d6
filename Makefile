# Two entry points: `make serve` (set up, then serve the shipped model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: serve test test-containers lint browser format clean train-setup

# Serving needs no TensorFlow (ONNX Runtime or OpenVINO); training and the tests add it.
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Training needs TensorFlow and the training libraries: the `cpu` extra (`gpu` for CUDA).
$(VENV)/.train: $(VENV)/.base
	$(BIN)/python -m pip install --quiet -e '.[cpu]'
	touch $@

train-setup: $(VENV)/.train

$(VENV)/.test: $(VENV)/.train
	$(BIN)/python -m pip install --quiet -e '.[cpu,test]'
	touch $@

# checkov (tests/test_k8s.py's policy linter) pins packaging<24 and ~100 packages: its own venv.
CHECKOV_VENV ?= .venv-checkov
$(CHECKOV_VENV)/.done:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $@

serve: $(VENV)/.base
	@$(BIN)/classifier-serve

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Tests drive Debian's Chromium (the demo and labelling pages), nginx (deploy/nginx.conf) and
# promtool (deploy/prometheus; Debian's `prometheus` package ships it); installed here when
# running as root, else those tests are skipped.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
	    || ! [ -x /usr/sbin/nginx ] || ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium, chromium-driver, nginx and prometheus (promtool)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver nginx prometheus >/dev/null; } \
	      || echo "could not install them: the browser, nginx and promtool tests will be skipped"; \
	  else \
	    echo "chromium, chromedriver, nginx or promtool missing: their tests will be skipped"; \
	  fi; \
	fi

# What the tests need is set up side by side (the test venv then lint, Debian's packages, and
# checkov's venv: one to four minutes of pip fetching on its own), then the tests run, a file
# at a time on TEST_WORKERS processes (pytest-xdist; module fixtures stay in one process): one
# per core, at most four, since each test's servers and trainings take cores and memory of
# their own. TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test:
	$(MAKE) --jobs=3 --output-sync=target lint browser $(CHECKOV_VENV)/.done
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest --durations=15 \
	  --numprocesses=$(TEST_WORKERS) --dist=loadfile

# The container test (tests/containers): builds both images from the Dockerfile through
# docker-compose.yml and runs them on a real Docker engine, installing Debian's docker.io and
# the compose plugin and starting dockerd when they are missing (root); where no engine can be
# had it says so in one line and skips. CI runs it after `make test`.
test-containers: $(VENV)/.test
	$(BIN)/python -m pytest --containers -rfE tests/containers

format: $(VENV)/.test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache *.egg-info
