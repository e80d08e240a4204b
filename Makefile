# welfare-outreach: `make` alone lists the documented targets.
# Every stage target calls the project's CLI (`outreach`). CONFIG=path/to.yaml picks another config.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUTREACH := $(BIN)/outreach
STAMP := $(VENV)/.installed
CONFIG ?=
CONFIG_ARG := $(if $(CONFIG),--config $(CONFIG),)
BENCH_HOUSEHOLDS ?= 1000000
PYTEST_ARGS ?=

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.DEFAULT_GOAL := help
.PHONY: help setup data run test bench lint clean distclean sample describe

help: ## list the documented targets
	@echo "welfare-outreach — make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: CONFIG=configs/x.yaml  BENCH_HOUSEHOLDS=$(BENCH_HOUSEHOLDS)"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the locked dependencies (done by run and test when missing)

data: $(STAMP) ## generate synthetic raw tables and truth into outputs/ (never touches data_samples/)
	$(OUTREACH) $(CONFIG_ARG) generate

describe: $(STAMP) ## summarise the raw tables (and the hidden truth of synthetic data)
	$(OUTREACH) $(CONFIG_ARG) describe

run: $(STAMP) ## run every stage, in order, on the committed sample (embedded defaults)
	$(OUTREACH) $(CONFIG_ARG) run

test: $(STAMP) ## run the test suite
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP) ## measure the stages at BENCH_HOUSEHOLDS households; writes outputs/bench/*.json
	$(OUTREACH) $(CONFIG_ARG) bench --households $(BENCH_HOUSEHOLDS)

sample: $(STAMP) ## regenerate the committed sample in data_samples/ byte for byte
	$(OUTREACH) --config configs/sample.yaml generate --output-dir data_samples --force

lint: $(STAMP) ## check the code with ruff
	$(BIN)/ruff check pipeline features models tests
	$(BIN)/ruff format --check pipeline features models tests

clean: ## remove outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean ## also remove the virtual environment
	rm -rf $(VENV)
