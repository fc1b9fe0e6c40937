# Two commands on a fresh machine:  `make demo` (runs the pipeline)  and  `make test`.
# Both create .venv and install the project first.
#
# torch is pinned in the same pip call as the project: on CPU-only machines with a local CPU wheel
# this resolves to the CPU build; on a GPU Linux box PyPI's torch 2.13.0 is a CUDA build.
# Another torch/CUDA build:  make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
# (or TORCH=torch for the newest release).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
CORES  ?= all
# The SLURM executor plugin only where SLURM's client tools are (it costs every snakemake call a
# query to the controller): `make install EXTRAS=dev` to leave it out, EXTRAS=dev,slurm to force it.
EXTRAS ?= dev$(if $(shell command -v sinfo 2>/dev/null),$(comma)slurm)
comma  := ,
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test lint dryrun clean-results

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" $(TORCH)
	touch $@

install: $(BIN)/.installed  ## only create .venv and install (e.g. before `xmodseg restore` on a fresh clone)

demo: $(BIN)/.installed  ## run the whole pipeline on the synthetic default; ends with results/report/
	$(BIN)/snakemake --cores $(CORES)
	@echo "report: results/report/summary.md"

test: $(BIN)/.installed  ## the test suite (unit + end-to-end workflow runs)
	$(BIN)/python -m pytest

lint: $(BIN)/.installed  ## Snakemake lint, ruff, mypy and the import layers (configured in pyproject.toml)
	$(BIN)/snakemake --lint
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

dryrun: $(BIN)/.installed
	$(BIN)/snakemake -n
