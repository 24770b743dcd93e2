# Video Model Benchmark. Every target creates .venv on first use; there is no
# separate install step. Variables (override on the command line):
#   DATA     dataset folder in Kinetics layout      (data/kinetics20)
#   FORMAT   frame store format: jpg | hdf5          (jpg)
#   STORE    frame store folder                      (data/frames/<dataset>_<format>)
#   GPUS     processes (GPUs) per node               (1)
#   WORKERS  DataLoader workers per process          (8)
#   RESULTS  results folder                          (results)
PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed

DATA    ?= data/kinetics20
FORMAT  ?= jpg
STORE   ?= data/frames/$(notdir $(DATA))_$(FORMAT)
GPUS    ?= 1
WORKERS ?= 8
RESULTS ?= results
CNN_CONFIG         ?= configs/X3D_M.yaml
TRANSFORMER_CONFIG ?= configs/MVIT_B_16x4.yaml
TRAIN_ARGS ?=

TORCHRUN := $(VENV)/bin/torchrun --standalone --nproc-per-node=$(GPUS)

.PHONY: venv synth frames verify bench-cnn bench-transformer score test lint perf clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt
	$(PYTHON_SYS) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt
	touch $@

synth: $(STAMP)
	$(PY) -m preprocess synth --out data/synth20

frames: $(STAMP)
	$(PY) -m preprocess frames --data $(DATA) --out $(STORE) --format $(FORMAT)

verify: $(STAMP)
	$(PY) -m preprocess verify --store $(STORE)

bench-cnn: $(STAMP)
	$(TORCHRUN) -m train --config $(CNN_CONFIG) --data $(STORE) --workers $(WORKERS) --out $(RESULTS) $(TRAIN_ARGS)

bench-transformer: $(STAMP)
	$(TORCHRUN) -m train --config $(TRANSFORMER_CONFIG) --data $(STORE) --workers $(WORKERS) --out $(RESULTS) $(TRAIN_ARGS)

score: $(STAMP)
	$(PY) -m score --results $(RESULTS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
