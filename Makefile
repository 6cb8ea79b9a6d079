# Bundlewise: every task a newcomer needs. `make demo` and `make test` set up everything themselves.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

include config/local.env
export $(shell sed -n 's/^\(BUNDLEWISE_[A-Z_]*\)=.*/\1/p' config/local.env)
export BUNDLEWISE_DATA_DIR ?= $(abspath $(CURDIR)/../shared/data)
export PYTHONPATH := $(CURDIR):$(CURDIR)/shared/generated
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# The virtual environment lives outside the clone, keyed by the hash of requirements.txt.
# Evaluated once, on first use, so targets that need no Python never build it.
VENV = $(eval VENV := $$(shell scripts/venv.sh | tail -n 1))$(VENV)
PY = $(VENV)/bin/python
PROTOS := $(shell find proto -name '*.proto' | sort)

.PHONY: help venv up down status proto proto-check openapi lint fmt typecheck unit integration test demo demo-stop migrate models eval bench test-tools deploy-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: ## build (or reuse) the virtual environment
	@echo "virtualenv: $(VENV)"

up: ## install if missing and start PostgreSQL, Redis and Kafka on loopback
	bash infra/up.sh

down: demo-stop ## stop the demo's services and the servers
	bash infra/down.sh

status: ## is each server up?
	bash infra/status.sh

proto: ## regenerate the gRPC code in shared/generated from proto/
	rm -rf shared/generated/bundlewise
	PATH="$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=shared/generated --grpc_python_out=shared/generated \
	  --mypy_out=quiet:shared/generated --mypy_grpc_out=quiet:shared/generated $(PROTOS)

openapi: venv ## rewrite docs/openapi.json from the gateway's routes (a unit test fails when it is stale)
	$(PY) -m services.gateway.openapi_document

proto-check: ## fail when shared/generated is stale
	$(MAKE) --no-print-directory proto
	git diff --exit-code --stat -- shared/generated || { echo "shared/generated is stale: run make proto and commit"; exit 1; }

lint: ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: ## mypy --strict over the project's code
	$(VENV)/bin/mypy shared services scripts tests benchmarks

models: venv ## convert packaged model weights into the local model cache (BUNDLEWISE_MODEL_CACHE; offline, once)
	$(PY) -m scripts.prepare_models

migrate: up ## apply database migrations to BUNDLEWISE_NAMESPACE
	$(PY) -m shared.store.migrate

unit: models ## fast tests, no servers
	$(PY) -m pytest tests/unit -q

integration: up ## end-to-end tests on the real servers
	$(PY) -m pytest tests/integration -q

test: venv proto-check lint typecheck models up test-tools ## every check and every test
	$(PY) -m pytest tests -q

test-tools: ## install the programs tests drive beyond the venv (docker-compose, chromium, espeak-ng)
	bash scripts/install_test_tools.sh

deploy-check: venv test-tools ## validate Dockerfile, compose, Kubernetes manifests, alerts and dashboards offline
	$(PY) -m pytest tests/deploy -q

bench: venv up test-tools ## run every benchmark on the real servers; figures to benchmarks/results/, docs/benchmarks.md
	$(PY) -m benchmarks.run

# The trained Youshu model: two cross-view members, and popularity and new-bundle priors chosen on tune;
# youshu_item_overlap then adds the exact item-level terms the ranker serves (docs/bundle-quality.md).
YOUSHU_MAIN = --model crossview --epochs 100 --members 2 --bundle-priors

eval: venv ## reproduce the bundle-quality figures: Youshu standard and cold splits (baselines, 3 seeds of the main model) and complete-the-bundle on Amazon and Steam, and the embedding service's item fusion (about 2.5 hours on 2 cores)
	for model in popularity item_cooccurrence itemknn mf_bpr lightgcn; do \
	  nice -n 19 $(PY) -m services.ranker.offline.train_youshu --model $$model --seed 0; done
	for seed in 0 1 2; do nice -n 19 $(PY) -m services.ranker.offline.train_youshu $(YOUSHU_MAIN) --seed $$seed; done
	nice -n 19 $(PY) -m services.ranker.offline.youshu_item_overlap --seeds 0 1 2
	$(PY) -m services.ranker.offline.report_youshu --runs var/runs/youshu-standard --main-model crossview_item_terms
	for model in popularity item_cooccurrence itemknn; do \
	  nice -n 19 $(PY) -m services.ranker.offline.train_youshu --model $$model --seed 0 --split cold; done
	for seed in 0 1 2; do nice -n 19 $(PY) -m services.ranker.offline.train_youshu $(YOUSHU_MAIN) --seed $$seed --split cold; done
	nice -n 19 $(PY) -m services.ranker.offline.youshu_item_overlap --seeds 0 1 2 --split cold
	$(PY) -m services.ranker.offline.report_youshu --runs var/runs/youshu-cold --main-model crossview_item_terms \
	  --out benchmarks/results/youshu_cold.json --plot docs/youshu-cold-recall-at-k.png
	nice -n 10 $(PY) -m services.ranker.offline.complete_bundles --seeds 0 1 2 3 4
	nice -n 10 $(PY) -m services.ranker.offline.train_item_fusion --seeds 0 1 2 3 4

demo: venv models up ## run the whole system on the real data and show what it does
	$(PY) -m scripts.demo

demo-stop: ## stop the services that make demo left running (SIGTERM: they stop gracefully)
	bash scripts/stop_services.sh
