# The two entry points a newcomer needs: `make run` and `make test`.
# Both create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Modules setup.py compiles with mypyc: editing one means rebuilding.
COMPILED := $(addprefix simulator/,engine.py credit.py tcp.py network.py netback.py workloads.py)

.PHONY: run test quick lint venv bench calibrate clean

$(STAMP): pyproject.toml setup.py $(COMPILED)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The main job on the simulated host: the report's receive experiment with 8 domUs; then the
# daemon on that host: start it, show `xvrd status`, stop it with SIGTERM.
run: $(STAMP)
	$(BIN)/xvrd simulate --workload receive --domus 8
	XVRD=$(BIN)/xvrd bash scripts/daemon-demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Benchmarks print figures; they assert nothing.
bench: $(STAMP)
	$(BIN)/python bench/bench_simulator.py
	$(BIN)/python bench/bench_daemon.py

# The simulated host against the reference measurements, cell by cell.
calibrate: $(STAMP)
	$(BIN)/xvrd simulate calibrate

quick: $(STAMP)
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
