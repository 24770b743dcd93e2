# Video Model Benchmark. Every target creates .venv on first use; there is no
# separate install step. Variables (override on the command line):
#   DATA     dataset folder in Kinetics layout      (data/kinetics20)
#   FORMAT   frame store format: jpg | hdf5 | raw    (jpg; raw: decoded frames, made from
#            the JPEG store JPEG_STORE, README "Which store")
#   STORE    frame store folder                      (data/frames/<dataset>_<format>)
#   JPEG_STORE  FORMAT=raw: the JPEG store it is decoded from (data/frames/<dataset>_jpg)
#   GPUS     processes (GPUs) per node               (1)
#   WORKERS  DataLoader workers per process          (8)
#   RESULTS  results folder; make score: several folders and packages, e.g.
#            RESULTS="a.tar.gz b.tar.gz results/" (one comparison, comparison.html)   (results)
#   SYSTEM   the name results are grouped by, e.g. dgx-a100-rack3   (the host's name)
#   SYSTEM_DESCRIPTION  a YAML/JSON file describing the system (interconnect, storage,
#            network, power_cap_w, cooling, notes), recorded with each run   (none)
#   PACKAGE  make package: the archive written    (<system>.tar.gz)
#   RUNS     bench-*: runs of the campaign, seeds 0..RUNS-1 (the rules: 5)   (1)
#   TORCH_INDEX  PyTorch wheel index for torch and torchvision, e.g.
#            https://download.pytorch.org/whl/cu126 for a driver older than the pinned
#            build's CUDA 13 (none: PyPI); takes effect on a fresh venv (make clean-venv)
#   K400     make data: a local Kinetics-400 copy to assemble Kinetics-20 from (none: git)
#   K20_REPO make data: git repository holding data/kinetics20 (the original benchmark's)
#   TEST_JOBS make test: test processes (pytest-xdist; 0: all in one process)   (the cores, at most 4)
PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
# The loader's C code (datasets/jpeg_window.c on the system's libjpeg-turbo, and
# datasets/bilinear.c); built with the environment; every target that loads clips needs it.
NATIVE     := datasets/_native.so
ENV        := $(STAMP) $(NATIVE)

DATA    ?= data/kinetics20
FORMAT  ?= jpg
STORE   ?= data/frames/$(notdir $(DATA))_$(FORMAT)
JPEG_STORE ?= data/frames/$(notdir $(DATA))_jpg
GPUS    ?= 1
WORKERS ?= 8
RESULTS ?= results
SYSTEM  ?=
SYSTEM_DESCRIPTION ?=
RUNS    ?= 1
PACKAGE ?=
K400     ?=
K20_REPO ?= https://github.com/emadRad/VideoModelBenchmark.git
CNN_CONFIG         ?= configs/X3D_M.yaml
TRANSFORMER_CONFIG ?= configs/MVIT_B_16x4.yaml
TRAIN_ARGS ?=
TORCH_INDEX ?=
REFERENCE  ?= configs/reference.yaml
PROBE_ARGS ?=
RUN        ?=
# Many tests start two or more training processes of their own: more than 4 test processes
# would only add memory (each builds the session's tiny stores once).
TEST_JOBS  ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ "$$n" -gt 4 ] && n=4; echo $$n)

# The demo: the whole pipeline on the built-in synthetic dataset, sized for a CPU:
# 5 classes, each shape in its class's colour (the cue configs/demo_*.yaml rely on).
DEMO_DATA    ?= data/synth_demo
DEMO_STORE   ?= data/frames/synth_demo_jpg
DEMO_SYNTH   := --classes 5 --train-per-class 64 --val-per-class 16 --duration 1.2 \
                --colour-cue --clutter 0
DEMO_RESULTS ?= results/demo
SYNTH_ARGS   ?=
DEMO_ARGS    ?=

TORCHRUN := $(PY) -m train.torchrun --standalone --nproc-per-node=$(GPUS)
SYSTEM_ARGS = $(if $(SYSTEM),--set system=$(SYSTEM)) \
              $(if $(SYSTEM_DESCRIPTION),--set system_description=$(SYSTEM_DESCRIPTION))
# RUNS=N: N runs one after another (seeds 0..N-1), continued where a stop left it, then scored.
CAMPAIGN = $(PY) -m train.campaign --runs $(RUNS) --
SCORE_CAMPAIGN = $(if $(filter-out 1,$(RUNS)),$(PY) -m score --results $(RESULTS))

.PHONY: venv native synth data check frames verify bench bench-cnn bench-transformer resume score package demo test faults lint perf probe clean-venv

venv: $(ENV)

native: $(NATIVE)

$(NATIVE): datasets/jpeg_window.c datasets/bilinear.c
	@printf '#include <stdio.h>\n#include <jpeglib.h>\n' | $(CC) -E - >/dev/null 2>&1 || { echo "error: \
	cannot build $@: no C compiler ($(CC)) or no libjpeg headers; install them \
	(Debian/Ubuntu: apt-get install gcc libjpeg-dev) and run make again" >&2; exit 2; }
	$(CC) -O3 -Wall -shared -fPIC -o $@.tmp $^ -ljpeg
	mv $@.tmp $@

$(STAMP): requirements.txt requirements-test.txt
	$(PYTHON_SYS) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(VENV)/bin/pip install --quiet --disable-pip-version-check \
	    --index-url $(TORCH_INDEX) $$(grep -E '^torch(vision)?==' requirements.txt))
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt
	touch $@

synth: $(STAMP)
	$(PY) -m preprocess synth --out $(DEMO_DATA) $(DEMO_SYNTH) $(SYNTH_ARGS)

# Kinetics-20 into $(DATA): from K400= if given, else the original repository (git); checked.
data: $(STAMP)
	$(PY) -m preprocess data --out $(DATA) $(if $(K400),--k400 "$(K400)",--repo "$(K20_REPO)")

# Is $(DATA) the benchmark's Kinetics-20? (differences in $(DATA)_check.csv; frames and verify
# run the same check)
check: $(STAMP)
	$(PY) -m preprocess check --data $(DATA)

# FORMAT=raw: build (or complete) the JPEG store, then decode it into $(STORE).
frames: $(STAMP) $(if $(filter raw,$(FORMAT)),$(NATIVE))
ifeq ($(FORMAT),raw)
	$(PY) -m preprocess frames --data $(DATA) --out $(JPEG_STORE) --format jpg
	$(PY) -m datasets.decoded_store --jpeg-store $(JPEG_STORE) --out $(STORE)
else
	$(PY) -m preprocess frames --data $(DATA) --out $(STORE) --format $(FORMAT)
endif

verify: $(STAMP)
	$(PY) -m preprocess verify --store $(STORE)

bench-cnn: $(ENV)
	$(CAMPAIGN) $(TORCHRUN) -m train --config $(CNN_CONFIG) --data $(STORE) --workers $(WORKERS) --out $(RESULTS) $(SYSTEM_ARGS) $(TRAIN_ARGS)
	$(SCORE_CAMPAIGN)

bench-transformer: $(ENV)
	$(CAMPAIGN) $(TORCHRUN) -m train --config $(TRANSFORMER_CONFIG) --data $(STORE) --workers $(WORKERS) --out $(RESULTS) $(SYSTEM_ARGS) $(TRAIN_ARGS)
	$(SCORE_CAMPAIGN)

# Both models, one campaign each (RUNS=5 for the rules' runs).
bench: $(ENV)
	$(MAKE) --no-print-directory bench-cnn
	$(MAKE) --no-print-directory bench-transformer

# A run keeps its own store: --data only if STORE is given on the command line (it must then
# have the run's fingerprint).
resume: $(ENV)
	$(TORCHRUN) -m train --resume $(RUN) $(if $(filter command line,$(origin STORE)),--data $(STORE)) --workers $(WORKERS)

# Before a run: checks, what the GPUs eat vs what the loader supplies, predicted time and
# score of both models (README, "Before a run"). PROBE_ARGS: see python -m probe --help.
probe: $(ENV)
	$(PY) -m probe --configs $(CNN_CONFIG) $(TRANSFORMER_CONFIG) --gpus $(GPUS) \
	    --workers $(WORKERS) --store $(STORE) --results $(RESULTS) --reference $(REFERENCE) \
	    $(PROBE_ARGS)

# Each config is scored against the configs/reference*.yaml that lists it (the demo presets
# against reference_demo.yaml); REFERENCE=<file or results folder> on the command line: all.
score: $(STAMP)
	$(PY) -m score --results $(RESULTS)$(if $(filter command line,$(origin REFERENCE)), --reference $(REFERENCE))

# One archive of SYSTEM's runs under RESULTS (default: this host's), with the score tables,
# one MLPerf style log per run and a sha256 manifest. RESULTS="a.tar.gz b.tar.gz results/"
# on make score compares packages and folders, and writes comparison.html.
package: $(STAMP)
	$(PY) -m score.package --results $(RESULTS) --system "$(or $(SYSTEM),$(shell hostname))" \
	    $(if $(PACKAGE),--out $(PACKAGE))

# One process, one loader worker: on a 2-core CPU the other core trains.
demo: synth $(NATIVE)
	$(PY) -m preprocess frames --data $(DEMO_DATA) --out $(DEMO_STORE) --format jpg
	$(MAKE) --no-print-directory bench-cnn CNN_CONFIG=configs/demo_X3D_M.yaml \
	    STORE=$(DEMO_STORE) RESULTS=$(DEMO_RESULTS) GPUS=1 WORKERS=1 TRAIN_ARGS="$(DEMO_ARGS)"
	$(MAKE) --no-print-directory bench-transformer TRANSFORMER_CONFIG=configs/demo_MVIT_B_16x4.yaml \
	    STORE=$(DEMO_STORE) RESULTS=$(DEMO_RESULTS) GPUS=1 WORKERS=1 TRAIN_ARGS="$(DEMO_ARGS)"
	$(PY) -m score --results $(DEMO_RESULTS)

test: $(ENV)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(TEST_JOBS)

# The fault-injection suite with 10 randomised rounds (make test runs one round).
faults: $(ENV)
	FAULT_ROUNDS=10 $(PY) -m pytest -q tests/test_faults_*.py

# Benchmark scripts on small synthetic data; each prints a table (docs/PERFORMANCE.md).
perf: synth $(NATIVE)
	$(PY) -m perf.frames --data $(DEMO_DATA)
	$(PY) -m perf.loader_speed --quick
	$(PY) -m perf.decoded_store --quick
	$(PY) -m perf.model_step --quick
	$(PY) -m perf.model_flops
	$(PY) -m perf.energy_sampler --seconds 2

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
