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
BENCH_STAGES ?= generate,validate,ingest,features,score,audit,report
BENCH_REPEAT ?= 1
TRAIN_HOUSEHOLDS ?= 200000
MLFLOW_ROOT ?= outputs/mlflow
MLFLOW_PORT ?= 5000
PYTEST_ARGS ?=
# The suite runs on two pytest-xdist workers, a test file to a worker (its module fixtures are
# built once); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
TEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.DEFAULT_GOAL := help
.PHONY: help setup data run test bench bench-national bench-train bench-train-national lint clean distclean sample describe features
.PHONY: validate ingest
.PHONY: report
.PHONY: outcomes-import outcomes-import-calls
.PHONY: audit
.PHONY: train mlflow-ui promote rollback score score-shadow
.PHONY: simulate bench-simulate
.PHONY: retention explain export

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

validate: $(STAMP) ## check the raw tables with Great Expectations; results in outputs/validation/
	$(OUTREACH) $(CONFIG_ARG) validate

ingest: $(STAMP) ## stage validated raw tables without identifiers (keyed pseudonyms) in outputs/staged/
	$(OUTREACH) $(CONFIG_ARG) ingest

features: $(STAMP) ## point-in-time features and labels of a round (AS_OF=YYYY-MM, default the next round)
	$(OUTREACH) $(CONFIG_ARG) features $(if $(AS_OF),--as-of $(AS_OF),)

describe: $(STAMP) ## summarise the raw tables (and the hidden truth of synthetic data)
	$(OUTREACH) $(CONFIG_ARG) describe

run: $(STAMP) ## run every stage, in order, on the committed sample (embedded defaults)
	$(OUTREACH) $(CONFIG_ARG) run

test: $(STAMP) ## run the test suite
	$(BIN)/pytest $(TEST_PARALLEL) $(PYTEST_ARGS)

bench: $(STAMP) ## measure the stages at BENCH_HOUSEHOLDS households (BENCH_REPEAT=3: the median of 3 runs); writes outputs/bench/*.json
	$(OUTREACH) $(CONFIG_ARG) bench --households $(BENCH_HOUSEHOLDS) --stages $(BENCH_STAGES) --repeat $(BENCH_REPEAT)

bench-national: $(STAMP) ## the national case: 23,000,000 households, generate + every stage of a round (measured on issue 20's world: generate 14.2 min, the round 8.6 min, 8.2 GB of disk; docs/scaling.md)
	$(OUTREACH) $(CONFIG_ARG) bench --households 23000000 --stages generate,validate,ingest,features,score,report

bench-train: $(STAMP) ## measure training at TRAIN_HOUSEHOLDS households (200,000; 1000000 for the 1 M case): the median of 3 runs, each building its feature rounds; docs/scaling.md
	$(OUTREACH) $(CONFIG_ARG) bench --households $(TRAIN_HOUSEHOLDS) --stages generate,validate,ingest,train --repeat 3

bench-train-national: $(STAMP) ## the national training case: 23,000,000 households, generate, validate, ingest, then train with every backtest round (one run; measured: 19.8 min of feature rounds, then 22.5 min and 7.05 GB; docs/scaling.md)
	$(OUTREACH) $(CONFIG_ARG) bench --households 23000000 --stages generate,validate,ingest,train

simulate: $(STAMP) ## the living loop: every policy round after round on the sample's world (ROUNDS=, POLICIES=a,b); outputs/simulate/
	$(OUTREACH) $(CONFIG_ARG) simulate $(if $(ROUNDS),--rounds $(ROUNDS),) $(if $(POLICIES),--policies $(POLICIES),)

bench-simulate: $(STAMP) ## the living loop at 200,000 households (a newly generated world), timed in outputs/bench/simulate.json; the config's simulate section picks policies and rounds (measured times: docs/simulation.md)
	$(OUTREACH) $(CONFIG_ARG) bench --households 200000 --stages generate,simulate

train: $(STAMP) ## backtest the registered candidate, audit fairness, log and register in MLflow, apply the gates (COMPARE=all also fits the comparisons: docs/training.md)
	$(OUTREACH) $(CONFIG_ARG) train $(if $(COMPARE),--compare $(COMPARE))

score: $(STAMP) ## score a round with the champion: lists per 읍면동, reasons, manifest (AS_OF=, MODEL_VERSION=, FORCE=1)
	$(OUTREACH) $(CONFIG_ARG) score $(if $(AS_OF),--as-of $(AS_OF),) $(if $(MODEL_VERSION),--model-version $(MODEL_VERSION),) $(if $(FORCE),--force,)

score-shadow: $(STAMP) ## score a scored round with a challenger beside the champion, no list written (VERSION=N, AS_OF=, FORCE=1)
	@test -n "$(VERSION)" || { echo "make score-shadow: set VERSION=N (the challenger's model version)"; exit 2; }
	$(OUTREACH) $(CONFIG_ARG) score --shadow $(VERSION) $(if $(AS_OF),--as-of $(AS_OF),) $(if $(FORCE),--force,)

report: $(STAMP) ## HTML review report of a scored round in rounds/YYYY-MM/report/ (AS_OF=YYYY-MM)
	$(OUTREACH) $(CONFIG_ARG) report $(if $(AS_OF),--as-of $(AS_OF),)

audit: $(STAMP) ## verify a round's lineage, list to re-score (AUDIT_PATH=round dir|list file|manifest, or AS_OF=; default: the default round; SAMPLE=N or FULL=1; HOUSEHOLD=KEY: one household of the round)
	$(OUTREACH) $(CONFIG_ARG) audit $(or $(AUDIT_PATH),$(AS_OF)) $(if $(SAMPLE),--sample $(SAMPLE),) $(if $(FULL),--full,) $(if $(HOUSEHOLD),--household $(HOUSEHOLD),)

promote: $(STAMP) ## give VERSION the champion alias by hand: make promote VERSION=3 REASON="..."
	$(OUTREACH) $(CONFIG_ARG) promote "$(VERSION)" --reason "$(REASON)"

rollback: $(STAMP) ## return the champion alias to the previous champion: make rollback REASON="..."
	$(OUTREACH) $(CONFIG_ARG) rollback --reason "$(REASON)"

outcomes-import: $(STAMP) ## import lists returned by caseworkers: make outcomes-import FILE="a.xlsx b.csv"
	@test -n "$(FILE)" || { echo 'usage: make outcomes-import FILE="returned_list.xlsx [...]"'; exit 2; }
	$(OUTREACH) $(CONFIG_ARG) outcomes import $(FILE)

outcomes-import-calls: $(STAMP) ## import the call service's results of the phone tier: make outcomes-import-calls FILE="calls_4111000000.csv"
	@test -n "$(FILE)" || { echo 'usage: make outcomes-import-calls FILE="calls_<시군구>.csv [...]"'; exit 2; }
	$(OUTREACH) $(CONFIG_ARG) outcomes import-calls $(FILE)

retention: $(STAMP) ## destroy household-level data older than retention.period_months, a record in the ledger (DRY_RUN=1: list what would go; TODAY=YYYY-MM-DD: the reference date)
	$(OUTREACH) $(CONFIG_ARG) retention $(if $(DRY_RUN),--dry-run,) $(if $(TODAY),--today $(TODAY),)

explain: $(STAMP) ## a one-page explanation for one household of a round, HTML and PDF: make explain KEY=... (AS_OF=YYYY-MM)
	@test -n "$(KEY)" || { echo 'usage: make explain KEY=<household key> [AS_OF=YYYY-MM]'; exit 2; }
	$(OUTREACH) $(CONFIG_ARG) explain "$(KEY)" $(if $(AS_OF),--round $(AS_OF),)

export: $(STAMP) ## each 읍면동's list and page as a bundle encrypted with its office's key, a record in the ledger (AS_OF=YYYY-MM, EMD=codes)
	$(OUTREACH) $(CONFIG_ARG) export $(if $(AS_OF),--as-of $(AS_OF),) $(if $(EMD),--emd $(EMD),)

mlflow-ui: $(STAMP) ## serve the MLflow UI read-only for auditors on 127.0.0.1 (user auditor; MLFLOW_PORT=5000, MLFLOW_ROOT=outputs/mlflow)
	$(BIN)/python -m pipeline.tracking.auditor_server --root $(MLFLOW_ROOT) --port $(MLFLOW_PORT) \
		--template configs/mlflow_auth.ini --mlflow $(BIN)/mlflow

sample: $(STAMP) ## regenerate the committed sample in data_samples/ byte for byte
	$(OUTREACH) --config configs/sample.yaml generate --output-dir data_samples --force

lint: $(STAMP) ## check the code with ruff and the import contracts (import-linter)
	$(BIN)/ruff check pipeline features models tests
	$(BIN)/ruff format --check pipeline features models tests
	$(BIN)/lint-imports --no-cache

clean: ## remove outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean ## also remove the virtual environment
	rm -rf $(VENV)
