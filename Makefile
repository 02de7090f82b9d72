# The two entry points a newcomer needs: `make run` and `make test`.
# Both create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Modules setup.py compiles with mypyc: editing one means rebuilding.
COMPILED := $(addprefix simulator/,engine.py credit.py tcp.py network.py netback.py workloads.py)

.PHONY: run test quick lint venv bench bench-libvirt calibrate suite clean system-deps build-deps

# Debian packages the libvirt backend builds against (build-deps: the venv needs libvirt-dev
# before it can build libvirt-python) and, for the tests, runs (system-deps: libvirtd, QEMU).
# apt-get when root, a no-op when all are there.
build-deps:
	scripts/install-system-deps --build

system-deps:
	scripts/install-system-deps

# The `libvirt` extra compiles against libvirt-dev: installed when pkg-config finds it (always
# in CI, which runs as root), left out on a machine without it (the libvirt tests then skip).
$(STAMP): pyproject.toml setup.py Makefile $(COMPILED) | build-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if pkg-config --exists libvirt 2>/dev/null; then \
		$(BIN)/python -m pip install --quiet -e '.[dev,libvirt]'; \
	else \
		$(BIN)/python -m pip install --quiet -e '.[dev]'; \
	fi
	touch $(STAMP)

venv: $(STAMP)

# The daemon on a simulated host (the report's receive experiment with 8 domUs), shown
# through `xvrd status` before and after a manual override; see scripts/demo.
run: $(STAMP)
	XVRD=$(BIN)/xvrd scripts/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: system-deps lint
	$(BIN)/pytest

# Benchmarks print figures; they assert nothing.
bench: $(STAMP)
	$(BIN)/python bench/bench_simulator.py
	$(BIN)/python bench/bench_daemon.py

# One tick's libvirt cost against the bare libvirt calls (root: starts its own libvirtd).
bench-libvirt: $(STAMP) system-deps
	$(BIN)/python bench/bench_libvirt.py

# The simulated host against the reference measurements, cell by cell.
calibrate: $(STAMP)
	$(BIN)/xvrd simulate calibrate

# Every strategy on every suite scenario (seed 0), one simulation per CPU: about half an
# hour on 2 cores. SUITE_FLAGS adds flags, e.g. SUITE_FLAGS="--seeds 0-4 --json".
suite: $(STAMP)
	$(BIN)/xvrd simulate suite --jobs $$(nproc) $(SUITE_FLAGS)

quick: $(STAMP)
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
