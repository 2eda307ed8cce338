# Two commands on a fresh machine (Python 3.11 + g++): `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint format bench clean tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@echo "compiling da4ml's numba kernels once (about 2 minutes; the RTL path needs them)"
	$(BIN)/python -c "from flow.hardware.rtl_trace import warm_up; warm_up()"
	touch $(STAMP)

# train, rank, harden; verify (bit-exact, exit 1 if not), fault-inject and estimate baseline, selective TMR, the
# planner and full TMR; print the comparison and write runs/demo/report/index.html (84 s on 2 idle cores, measured)
demo: $(STAMP)
	@echo "make demo: examples/demo.yaml -> runs/demo (train, rank, harden, then verify, inject, estimate 4 variants)"
	$(BIN)/ftflow compare examples/demo.yaml --out runs/demo
	$(BIN)/ftflow report runs/demo

test: $(STAMP) lint tools
	$(BIN)/pytest -q -n 2 --dist loadgroup  # 2 workers (pytest-xdist); modules sharing a fixture stay together

# the RTL tests need yosys, Verilator and Icarus Verilog, the report test a headless Chromium: Debian's packages,
# installed when missing
tools:
	@command -v yosys >/dev/null && command -v verilator >/dev/null && command -v iverilog >/dev/null \
	  && command -v chromium >/dev/null || { \
	  SUDO=$$(command -v sudo || true); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq yosys verilator iverilog \
	  chromium; }

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check flow tests bench
	$(BIN)/ruff format --check flow tests bench

format: $(STAMP)
	$(BIN)/ruff format flow tests bench
	$(BIN)/ruff check --fix flow tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
