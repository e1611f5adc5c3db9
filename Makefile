# The two commands of the README: `make serve` (everything, from a fresh clone to a running
# server) and `make test` (what CI runs). Other targets are the steps they are made of.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATASET ?= movielens-100k
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2

.PHONY: serve test install data train bench audit cluster clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned in pyproject (==2.13.0, the CPU wheel on this machine); constraints.txt pins the rest.
	# The ray extra: `recsys train --engine ray` and its parity test (tests/training/test_ray_engine.py).
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,ray]'
	touch $@

install: $(VENV)/.installed

data: install
	$(BIN)/recsys data fetch $(DATASET)

# Reuses the registered model when one exists for the same data and config (--force retrains).
train: data
	$(BIN)/recsys train --dataset $(DATASET) --reuse

# Development auth: user ids are trusted as sent (README: "User authentication"); a deployment
# sets RECSYS_AUTH__MODE=jwt|gateway with its keys.
serve: train
	RECSYS_AUTH__MODE=$${RECSYS_AUTH__MODE:-development} $(BIN)/recsys serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

# MovieLens-100K is fetched (from the RecBole wheel on PyPI) so the tests on the real labels run too.
# The state tests also run on PostgreSQL: a throwaway cluster the suite starts (scripts/pg-cluster.sh),
# from Debian's postgresql, installed here when missing.
test: install
	bash scripts/test-deps.sh
	bash scripts/pg-cluster.sh install
	$(BIN)/recsys data fetch $(DATASET)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --durations=25

# The deployment topology on this machine (README: "Deploy on several machines"): PostgreSQL, an MLflow
# server, two replicas and nginx on $(CLUSTER_PORT), under var/cluster; Ctrl-C stops all of it.
# In the background instead: recsys cluster up / status / down.
CLUSTER_PORT ?= 8080
cluster: data
	bash scripts/pg-cluster.sh install
	bash scripts/nginx.sh install
	RECSYS_AUTH__MODE=$${RECSYS_AUTH__MODE:-development} $(BIN)/recsys cluster up --foreground --port $(CLUSTER_PORT) \
		--dataset $(DATASET) --workers $(WORKERS)

bench: train
	bash scripts/bench-deps.sh
	$(BIN)/recsys bench all

# Audits the server `make serve` runs (start it first, in another shell); exit 1 on any failed article.
audit: install
	$(BIN)/recsys audit --url http://$(HOST):$(PORT) --out var/audit.json

clean:
	rm -rf var mlflow.db mlartifacts data/processed data/raw data/synthetic
