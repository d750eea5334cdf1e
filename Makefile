# The two commands: `make demo` (runs the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: demo test test-production ui mlflow-ui serve lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,production]'  # production: the PostgreSQL/S3 clients its tests use
	@touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml  ## materialize the whole graph on the local instance
	$(BIN)/mlops demo

test: $(STAMP)  ## the full test suite, on two workers that steal queued tests from each other when idle
	$(BIN)/pytest -n 2 --dist worksteal

test-production: $(STAMP)  ## the production profile on real services: PostgreSQL, MLflow server + S3, Redis (minutes)
	$(BIN)/pytest -n 2 --dist worksteal -m production mlops_pipelines_tests/test_production

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml  ## the Dagster UI on the demo's instance: http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow-ui: $(STAMP)  ## MLflow UI on the demo's tracking store: http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/data/mlflow/mlflow.db --host 127.0.0.1 --port 5000

serve: $(STAMP)  ## the serving API on the demo's data: http://127.0.0.1:8000/docs (freshness judged at the newest features)
	MLOPS_SERVE_AS_OF=$${MLOPS_SERVE_AS_OF-latest} $(BIN)/mlops serve

lint: $(STAMP)  ## ruff, pyright, the layering contract (lint-imports), `dg check defs`, the feature and prompt locks, docker/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright
	$(BIN)/lint-imports
	$(BIN)/dg check defs
	$(BIN)/mlops features diff
	$(BIN)/mlops prompts diff
	$(BIN)/python docker/check_compose.py

bench: $(STAMP)  ## every benchmark, each printing its ratio against a baseline measured in the same run
	$(BIN)/pip install --quiet -e '.[bench]'
	for b in bench_features bench_point_in_time bench_online_store bench_online_store_redis bench_training bench_backtest bench_shap bench_drift bench_ingestion bench_serving; do $(BIN)/python -m benchmarks.$$b || exit 1; done

clean:
	rm -rf data/dagster_home data/*.duckdb* data/*.sqlite* data/mlflow
