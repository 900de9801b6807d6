# Two entry points: `make serve` (set up, then serve the shipped model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: serve test lint browser format clean train-setup

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

# Tests drive Debian's Chromium (the demo page) and nginx (deploy/nginx.conf); installed
# here when running as root, else those tests are skipped.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
	    || ! [ -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium, chromium-driver and nginx"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver nginx >/dev/null; } \
	      || echo "could not install them: the browser and nginx tests will be skipped"; \
	  else \
	    echo "chromium, chromedriver or nginx missing: their tests will be skipped"; \
	  fi; \
	fi

test: lint browser $(CHECKOV_VENV)/.done
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest

format: $(VENV)/.test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache *.egg-info
