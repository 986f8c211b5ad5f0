# qmcp-agents developer tasks. `make demo` runs the main job, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ needed (PYTHON=$(PYTHON))"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	mkdir -p .dev/qmcp_agents
	ln -sfn ../../domain .dev/qmcp_agents/domain
	ln -sfn ../../adapters .dev/qmcp_agents/adapters
	ln -sfn ../../testing .dev/qmcp_agents/testing
	ln -sfn ../../sync .dev/qmcp_agents/sync
	touch $(STAMP)

demo: install
	$(VENV)/bin/qmcp-agents demo

lint: install
	$(VENV)/bin/ruff check domain adapters testing sync tests benchmarks

typecheck: install
	$(VENV)/bin/mypy -p qmcp_agents
	$(VENV)/bin/mypy tests benchmarks

# Two pytest-xdist workers: the suite waits on servers and subprocesses about half the time
# (docs/decisions.md, "The test suite on two workers"); PYTEST_WORKERS= runs it in one process.
PYTEST_WORKERS ?= -n 2 --dist loadgroup

unit: install
	tests/run-with-services $(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

test: lint typecheck unit

bench: install
	tests/run-with-services $(PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-mongo .dev build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache .hypothesis qmcp-agents.db
