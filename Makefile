# dmr: `make run` serves the default model on 127.0.0.1:12434; `make test` runs the test suite.
# Both set everything up from nothing (virtualenv, llama-cpp-python build, default model).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODELS_CACHE := .cache/models
DEFAULT_GGUF := $(MODELS_CACHE)/SmolLM2-135M-Instruct.Q4_1.gguf
# Extra CMake flags for llama-cpp-python, e.g. LLAMA_CMAKE_ARGS=-DGGML_CUDA=on on a GPU machine
# (with PIP_NO_CACHE_DIR=1, or pip reuses a cached CPU build: docs/gpu.md).
LLAMA_CMAKE_ARGS ?=
# Where pip also looks for torch (the diffusers engine's): empty = pip's own configuration (this machine's
# finds the CPU wheel in /opt/wheels). Elsewhere: https://download.pytorch.org/whl/cpu for the CPU build,
# or a CUDA index (https://download.pytorch.org/whl/cu128) on a GPU host. The release is pinned in conf/constraints.txt.
TORCH_INDEX ?=
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the tests use as real peers: an OCI registry and skopeo (pull benchmark), nginx (in front of dmr).
SYSTEM_PACKAGES := docker-registry skopeo apache2-utils openssl tmux nginx
# The web page's tests drive Debian's headless Chromium with Playwright (tests/web).
SYSTEM_PACKAGES += chromium
# nginx's njs module: model-affinity routing of deploy/nginx/dmr-cluster.conf (tests/scaleout).
SYSTEM_PACKAGES += libnginx-mod-http-js
# systemd-analyze checks conf/dmr.service offline (tests/deploy/test_systemd_unit.py).
SYSTEM_PACKAGES += systemd

.PHONY: install model system-deps run test test-slow bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python setup.cfg plugins/dmr-llamacpp/setup.cfg plugins/dmr-ctransformers/setup.cfg \
		plugins/dmr-diffusers/setup.cfg conf/constraints.txt
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -c conf/constraints.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
		-e '.[test]' -e plugins/dmr-llamacpp -e plugins/dmr-ctransformers -e plugins/dmr-diffusers
	@$(BIN)/python -c "import importlib.metadata as m; v = m.version('torch'); print('torch', v, '' if '+' in v else \
		'(no +cpu/+cuXXX label: on Linux this is the CUDA build from PyPI; see TORCH_INDEX in the Makefile)')"
	touch $@

install: $(VENV)/.installed

$(DEFAULT_GGUF): | $(VENV)/.installed
	$(BIN)/python -m dmr_core.bundled_models $(MODELS_CACHE)

model: $(DEFAULT_GGUF)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The log goes to the terminal and to a file, which `dmr logs` reads.
run: install model
	$(BIN)/dmr package --gguf $(DEFAULT_GGUF) ai/smollm2
	DMR_LOG_FILE=$${DMR_LOG_FILE:-$(CURDIR)/.cache/dmr.log} exec $(BIN)/gunicorn -c conf/gunicorn.conf.py

test: install model system-deps
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install model system-deps
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: install model
	$(PIP) install -q -c conf/constraints.txt -e '.[bench]'
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
