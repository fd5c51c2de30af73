# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
METHOD ?= mscl

.PHONY: ci-debs test-kinds slurm slurm-stop real-corpus-deps real-corpus own-baseline install demo test export-check nbtest pytest bench gpu-check gpu-check-dry clean-nbs lab lab-flags docs docs-check docs-chromium figures hear-validate board board-screenshot

$(VENV)/.installed: constraints.txt setup.py settings.ini
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,eval]'
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

# each test run gets its own TMPDIR, removed afterwards: the inline tests' temporary corpora and checkpoints
# (tempfile.mkdtemp, pytest's tmp_path; 20-40 GB a run) must not pile up in /tmp from run to run
IN_TMP = d=$$(mktemp -d -t soundlab-test.XXXXXX); TMPDIR=$$d
CLEAN_TMP = rc=$$?; rm -rf $$d; exit $$rc

nbtest: install
	$(IN_TMP) SOUNDLAB_OFFLINE=1 $(BIN)/nbdev_test --n_workers 2 --do_print; $(CLEAN_TMP)  # offline: no test touches the internet

pytest: install
	$(IN_TMP) $(BIN)/pytest -q --durations=10 tests; $(CLEAN_TMP)  # the ten slowest tests stay visible

test: export-check nbtest pytest

test-kinds: install  # the equality tests under every kernel family this CPU can reach (not in CI): benchmarks/results/test_kinds.{csv,md}
	$(IN_TMP) $(PY) tools/test_kinds.py; $(CLEAN_TMP)

bench: install  # every benchmark, one after the other (each prints its table and writes benchmarks/results/*.csv)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# on a machine with CUDA: every CUDA path tested (pytest -m cuda) and every recipe's training step timed at the seed's
# size, < 8 min on one H100; writes benchmarks/results/gpu_check{.csv,_tests.csv,.md,.log}; non-zero exit on any failure.
# Without a registry (a lent GPU machine): tools/gpu_check.sh (README: "The GPU check"). gpu-check-dry: the same on the
# CPU, every step that needs no CUDA (what CI runs through tests/test_gpu_check.py), results in a temporary folder.
gpu-check: install
	$(PY) tools/gpu_check.py $(GPU_CHECK_ARGS)

gpu-check-dry: install
	OMP_NUM_THREADS=1 $(PY) tools/gpu_check.py --dry-run $(GPU_CHECK_ARGS)

clean-nbs: install
	$(BIN)/nbdev_clean

# JupyterLab refuses to run as root (most containers) unless told: --allow-root only when the user id is 0
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: install
	$(BIN)/jupyter lab nbs $(LAB_FLAGS)

lab-flags:  # the flags `make lab` passes (tests/test_lab.py starts the server with them)
	@echo $(LAB_FLAGS)

# TensorBoard on the runs folder: every Trainer writes event files into its run folder (off: SOUNDLAB_TENSORBOARD=0).
# Bound to this machine only; BOARD_HOST=0.0.0.0 (or a host name) to serve others, BOARD_LOGDIR for a sweep's folder.
BOARD_LOGDIR ?= $(shell test -x $(PY) && $(PY) -c "from soundlab.core import runs_root; print(runs_root())" 2>/dev/null || echo data/runs)
BOARD_HOST ?= 127.0.0.1
BOARD_PORT ?= 6006
board: install
	$(BIN)/tensorboard --logdir $(BOARD_LOGDIR) --host $(BOARD_HOST) --port $(BOARD_PORT)

# the TensorBoard scalars page of a smoke run (trained into a temporary folder), for the docs site's train page
board-screenshot: install
	@command -v $(CHROMIUM) >/dev/null || { echo "no $(CHROMIUM): run make docs-chromium"; exit 1; }
	$(PY) tools/board_screenshot.py --chromium $(CHROMIUM) --out figures/tensorboard_scalars.png

# documentation site from the notebooks (Sphinx + MyST-NB, offline; see docs/conf.py) -> _docs/index.html
docs: install
	$(PY) docs/build.py --out _docs

# read the site as a reader would: a fresh TensorBoard screenshot of a smoke run (figures/tensorboard_scalars.png, shown
# on the train page), the site, internal link check, then headless-Chromium screenshots of a home, a library and a
# result page into _proc/screenshots/ (Debian's browser: `make docs-chromium` as root installs it)
CHROMIUM ?= chromium
docs-check: board-screenshot docs
	$(PY) docs/linkcheck.py _docs
	@command -v $(CHROMIUM) >/dev/null || { echo "no $(CHROMIUM): run make docs-chromium"; exit 1; }
	mkdir -p _proc/screenshots
	for p in index train run_icbhi; do \
	  $(CHROMIUM) --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
	    --disable-sync --no-first-run --hide-scrollbars --window-size=1280,1600 \
	    --screenshot=_proc/screenshots/$$p.png file://$(CURDIR)/_docs/$$p.html 2>/dev/null || exit 1; done
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
	  --disable-sync --no-first-run --hide-scrollbars --window-size=1280,9000 \
	  --screenshot=_proc/screenshots/run_icbhi_full.png file://$(CURDIR)/_docs/run_icbhi.html 2>/dev/null  # its figures
	@ls -l _proc/screenshots

docs-chromium:
	apt-get update && apt-get install -y chromium

# every result notebook's demo preset into figures/ (tables, figures, executed copies) through soundlab.sweep,
# WORKERS notebooks at a time; long (the sum of the demo runs, see README); tools/make_figures.py --only NAME for one
WORKERS ?= $(shell nproc)
figures: install
	$(PY) tools/make_figures.py --workers $(WORKERS)

# your own data: corpora of REAL recorded sounds from Debian packages (soundlab.realsounds), in four shapes, and the
# own-data default recipe against two baselines on each (soundlab.baselines, the untrained CNN's linear probe)
REAL_CORPUS_DEBS = espeak-ng fluidsynth fluid-soundfont-gm timgm6mb-soundfont hydrogen-drumkits sound-theme-freedesktop \
	oxygen-sounds wordwarvi-sound bucklespring-data
real-corpus-deps:  # root
	apt-get update && apt-get install -y --no-install-recommends $(REAL_CORPUS_DEBS)

ci-debs:  # root; CI (.ci/run) runs it on a fresh machine before the tests: the real corpora's packages and Info-ZIP zip
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $(REAL_CORPUS_DEBS) zip

real-corpus: install  # the first real corpus (espeak-ng words, fluidsynth notes: data/real)
	$(PY) -c "from soundlab.realsounds import make_real_corpus; print(make_real_corpus('data/real'))"

# make corpus-drums | corpus-onsets | corpus-scenes | corpus-imbalanced | corpus-fewshot -> data/corpora/<name>;
# corpus-<name>-smoke: the smoke-sized one the tests use -> data/corpora/<name>_smoke
corpus-%-smoke: install
	$(PY) -c "from soundlab.realsounds import make_corpus; print(make_corpus('$*', smoke=True))"
corpus-%: install
	$(PY) -c "from soundlab.realsounds import make_corpus; print(make_corpus('$*'))"

# per corpus and fold: the own default (last epoch) vs log-mel logistic regression vs the untrained CNN's linear probe
# -> figures/own_data_vs_baseline{.md,.csv,_folds.csv} (a finished fold is kept; about an hour of CPU, 2 folds at a time)
own-baseline: install
	nice -n 5 $(PY) tools/own_data_vs_baseline.py --out figures/own_data_vs_baseline

# a one-node SLURM on localhost for soundlab.sweep job arrays (root; installs slurm-wlm + munge if missing); then
# export SLURM_CONF=$(SLURM_LOCAL_DIR)/slurm.conf (it prints the line). tests/test_slurm.py uses it.
SLURM_LOCAL_DIR ?= /tmp/soundlab-slurm
slurm:
	SLURM_LOCAL_DIR=$(SLURM_LOCAL_DIR) tools/slurm_local.sh start

slurm-stop:
	SLURM_LOCAL_DIR=$(SLURM_LOCAL_DIR) tools/slurm_local.sh stop

# HEAR 2021's validator (hearvalidator) needs TensorFlow, which does not join the pinned environment: it gets its own
# venv, .venv-hear (TensorFlow + hearvalidator), which reads torch and soundlab's other dependencies from .venv through
# a .pth line, and checks soundlab.hear on a PANNs and an AST encoder (HEAR_MODELS: `load_model` strings). Not run by
# CI, which tests the same API contract in the main environment (nbs/56_hear.ipynb).
HEAR_VENV ?= .venv-hear
HEAR_MODELS ?= cnn6 cnn6,window=1,hop=0.05 ast_tiny224 ast_tiny224,input_tdim=100,hop=0.05  # 2nd of each: 50-ms timestamps
NUMPY_PIN = $(shell grep -i '^numpy==' constraints.txt)
$(HEAR_VENV)/.installed: $(VENV)/.installed
	@test -x $(HEAR_VENV)/bin/python || python3 -m venv $(HEAR_VENV)
	$(HEAR_VENV)/bin/pip install -q tensorflow-cpu==2.21.0 $(NUMPY_PIN)
	$(HEAR_VENV)/bin/pip install -q --no-deps hearvalidator==2021.0.2
	$(HEAR_VENV)/bin/python -c "import sysconfig; print('$(abspath $(VENV))/lib/python' + sysconfig.get_python_version() + '/site-packages')" \
	  > $$($(HEAR_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/soundlab-main-venv.pth
	@# triton (torch's GPU compiler, imported by timm) loaded after TensorFlow crashes (both bundle LLVM): load it first
	echo "import importlib.util; importlib.util.find_spec('triton') and __import__('triton.runtime')" \
	  > $$($(HEAR_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz-soundlab-triton-first.pth
	@touch $@

hear-validate: $(HEAR_VENV)/.installed
	for m in $(HEAR_MODELS); do PYTHONPATH=$(CURDIR) $(HEAR_VENV)/bin/hear-validator soundlab.hear -m $$m -d cpu || exit 1; done
