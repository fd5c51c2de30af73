# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
METHOD ?= mscl

.PHONY: install demo test export-check nbtest pytest bench clean-nbs lab

$(VENV)/.installed: constraints.txt setup.py settings.ini
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# the main job: M-SCL on ICBHI (embedded synthetic corpus unless data_root is given), CPU-sized demo preset
demo: install
	mkdir -p figures
	$(BIN)/papermill nbs/run_icbhi.ipynb figures/run_icbhi_$(METHOD).ipynb -p method $(METHOD) -p preset demo

# soundlab/ must be exactly what nbdev_export writes from nbs/
export-check: install
	@rm -rf /tmp/soundlab-export-check && cp -r soundlab /tmp/soundlab-export-check
	$(BIN)/nbdev_export
	@diff -r -x __pycache__ /tmp/soundlab-export-check soundlab || \
	  (echo "soundlab/ was out of sync with nbs/: run nbdev_export and commit both" && exit 1)

nbtest: install
	$(BIN)/nbdev_test --n_workers 2 --do_print

pytest: install
	$(BIN)/pytest -q --durations=10 tests  # the ten slowest tests stay visible

test: export-check nbtest pytest

bench: install  # every benchmark, one after the other (each prints its table and writes benchmarks/results/*.csv)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-nbs: install
	$(BIN)/nbdev_clean

lab: install
	$(BIN)/jupyter lab nbs
