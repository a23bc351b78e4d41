# rnnbench: two commands do all the set-up on a fresh machine.
#   make quick   the main job: a quick sweep on embedded Ray, then its report
#                (results/quick/ and results/quick/report/, both ignored by git;
#                `make quick REPORT=reports/quick` regenerates the committed example)
#   make test       the whole test suite (what CI runs)
#   make test-fast  the unit tests: no Ray, nothing marked slow (a couple of minutes)
#   make lint       ruff (lint and format check) and mypy, as CI runs them
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
OUT    ?= results/quick
REPORT ?= $(OUT)/report

.PHONY: setup quick test test-fast lint format docs

# The venv, with rnnbench installed editable and torch pinned by constraints.txt
# (an unpinned torch would pull a multi-GB CUDA build).  pip compiles every file it
# installs one by one; compileall does the same on every core (110 s instead of about
# 180 on 2 cores).  Like pip, it leaves a file written for another Python (a syntax
# error here) uncompiled.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile -c constraints.txt -e ".[test]"
	$(BIN)/python -m compileall -qq -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true
	touch $@

setup: $(VENV)/.installed

# The report is written even when some cells failed; the sweep's exit code is kept.
quick: setup
	$(BIN)/rnnbench run jobs/quick.yaml --out $(OUT); rc=$$?; \
	$(BIN)/rnnbench report $(OUT) --out $(REPORT) && exit $$rc

test: setup
	$(BIN)/pytest -q --durations=15 -n 3 --dist loadgroup

lint: setup
	$(BIN)/ruff check rnnbench tests benchmarks
	$(BIN)/ruff format --check rnnbench tests benchmarks
	$(BIN)/mypy

# docs/claims.md from the claims' code; README's findings block from reports/chapter10-cpu
docs: setup
	$(BIN)/python -m rnnbench.report.docs

format: setup
	$(BIN)/ruff check --fix rnnbench tests benchmarks
	$(BIN)/ruff format rnnbench tests benchmarks

test-fast: setup
	$(BIN)/pytest -q -m "not slow and not ray"
