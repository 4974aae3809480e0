# Everything a fresh machine needs: `make demo` (the main job) and `make test` create .venv,
# install torch (the local CPU build where there is one) and irat, make Fashion-MNIST available
# (`irat data fetch`: found, else downloaded and verified, else Debian's dataset-fashion-mnist
# through apt), then run.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install data demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,fmn]'
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(BIN)/irat data fetch fashion-mnist

demo: data
	$(BIN)/irat compare --config configs/demo.yaml --methods at,mail-trades,vir-trades --out runs/demo

test: data
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py --model tiny-cnn --method at

clean:
	rm -rf runs .pytest_cache
