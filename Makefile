# tiergate — one entry point per job. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TIERGATE := $(VENV)/bin/tiergate
RUN_ID ?= $(shell date -u +%Y%m%d-%H%M%S)
RUN_DIR := runs/$(RUN_ID)
PROFILE ?= local
RUNNER ?= subprocess
# Public labelled sets (README "Public data sets"), where present: the `public` profile trains on them, every
# profile's report runs the out-of-distribution checks (XSTest, SimpleSafetyTests) on them.
PUBLIC_DATA ?= $(if $(wildcard ../shared/public-data),../shared/public-data,)
PREVIOUS_MODEL ?= promoted   # screen and compare against what the GitOps repository serves now (none: a first model)
# A `tiergate feedback export` folder (or pvc:// / s3:// / gs:// URL): reviewed items whose labels win in merge; empty: none.
FEEDBACK_DATA ?=
IMAGES ?= cpu gpu triton
# `make review`: the feedback store (an SQLite file) and the port of the review service.
REVIEW_DB ?= sqlite:///runs/feedback.db
REVIEW_PORT ?= 8080

.PHONY: help setup run compile serve review bench test test-fast lint format data images base-image

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "tiergate needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first: the pinned CPU wheel; anything else would pull a multi-GB CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]"

setup: $(PY)  ## Create .venv and install tiergate with its pinned dependencies

data: $(PY)  ## Generate + merge the datasets offline into runs/<id>/data
	$(TIERGATE) data generate --profile $(PROFILE) --out $(RUN_DIR)/data/generated
	$(TIERGATE) data merge $(RUN_DIR)/data/generated --profile $(PROFILE) --out $(RUN_DIR)/data/merged
	ln -sfn $(RUN_ID) runs/latest
	@echo "dataset report: runs/latest/data/merged/report.md"

run: $(PY)  ## The main job end to end: KFP pipeline via kfp.local, then a real local Triton classifying examples (RUNNER=docker: tasks in their images)
	$(TIERGATE) pipeline run --local --runner $(RUNNER) --profile $(PROFILE) --run-id $(RUN_ID) \
		--public-data "$(PUBLIC_DATA)" --previous-model "$(strip $(PREVIOUS_MODEL))" \
		$(if $(strip $(FEEDBACK_DATA)),--feedback-data "$(strip $(FEEDBACK_DATA))")
	$(TIERGATE) demo runs/$(RUN_ID)

base-image:  ## The local base image tiergate-base:bookworm from Debian packages (root, mmdebstrap, a Docker engine)
	scripts/make-base-image.sh

images: $(PY)  ## Build the images on this machine: tiergate-{cpu,gpu,triton}:local (IMAGES="cpu triton" for a subset)
	scripts/build-images.sh $(IMAGES)

compile: $(PY)  ## Regenerate pipelines/compiled/tiergate.yaml (commit it)
	$(TIERGATE) pipeline compile

serve: $(PY)  ## Serve runs/latest/model_repository on a local Triton (Ctrl-C to stop)
	$(TIERGATE) serve --model-repo runs/latest/model_repository

review: $(PY)  ## The review service on http://127.0.0.1:8080 (store runs/feedback.db; REVIEW_PORT, REVIEW_DB), try-it on a local Triton serving runs/latest
	@test -f runs/latest/model_repository/repository.json || { echo "error: no runs/latest/model_repository: run make run first" >&2; exit 2; }
	@$(TIERGATE) serve --model-repo runs/latest/model_repository & serve=$$!; \
	trap 'kill $$serve 2>/dev/null; wait $$serve 2>/dev/null' EXIT; \
	$(TIERGATE) review --db "$(REVIEW_DB)" --triton-url http://127.0.0.1:8000 --port $(REVIEW_PORT)

test: $(PY)  ## The whole test suite (slow tests included); fails if no test ran
	@$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

test-fast: $(PY)  ## Everything but the tests marked slow
	$(PY) -m pytest -m "not slow"

lint: $(PY)  ## ruff + mypy (over the import root as installed: tiergate/ + cli, components, pipelines, serving)
	$(VENV)/bin/ruff check .
	rm -rf build/typecheck && mkdir -p build/typecheck/tiergate
	for entry in tiergate/*; do ln -s "$$PWD/$$entry" build/typecheck/tiergate/; done
	for folder in cli components pipelines serving; do ln -s "$$PWD/$$folder" build/typecheck/tiergate/$$folder; done
	cd build/typecheck && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml

format: $(PY)  ## Apply ruff's import sorting and fixes
	$(VENV)/bin/ruff check --fix .

bench: $(PY)  ## Serving benchmark on runs/latest: Triton (1/8/32 clients) vs onnxruntime vs transformers
	$(PY) benchmarks/serving.py --run runs/latest
