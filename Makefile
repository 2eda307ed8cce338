# Two commands on a fresh machine (Python 3.11 + g++): `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ftflow run examples/lenet_digits.yaml --out runs/lenet_digits

test: $(STAMP) lint
	$(BIN)/pytest -q

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
