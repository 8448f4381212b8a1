# vos-det: one command sets up and tests, one runs the demo. Targets create .venv when missing.
#   make setup [PYTHON=python3.12] [D2_SOURCE=<git URL or checkout>]
#   make test
#   make pretrain [ARGS="--force"]
#   make demo [QUICK=1]
#   make benchmark [ARGS="--seeds 5 --jobs 2 ..."]
PYTHON ?= python3
VENV ?= .venv
TORCH_PACKAGES ?= torch==2.14.1 torchvision==0.29.1
VENV_PYTHON := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.vos-det-setup

.PHONY: setup test pretrain demo benchmark bench clean-venv

setup: $(SETUP_STAMP)

# Rebuilt when the package's declared dependencies or the detectron2 installer change.
$(SETUP_STAMP): setup.py tools/install_detectron2.py
	@test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -c "import torch, torchvision" 2>/dev/null || \
		$(VENV_PYTHON) -m pip install --progress-bar off $(TORCH_PACKAGES)
	$(VENV_PYTHON) tools/install_detectron2.py
	$(VENV_PYTHON) -m pip install --progress-bar off -e ".[test]"
	@touch $@

test: setup
	$(VENV_PYTHON) -m pytest tests -q

# The benchmark's backbone, pretrained on the procedural shape corpus and cached under
# pretrained/ (demo, benchmark and the classifier also build it on first use).
pretrain: setup
	$(VENV_PYTHON) tools/pretrain_backbone.py $(ARGS)

# The embedded benchmark: train vanilla and VOS, evaluate, print the table, write
# output/demo/report.md. `make demo QUICK=1` runs a quarter of the schedule.
demo: setup
	$(VENV_PYTHON) tools/showcase.py $(if $(QUICK),--quick)

# Methods x training seeds (vanilla and VOS, seeds 1-3 by default) on the synthetic benchmark,
# resumable; writes output/benchmark/report.md. ARGS go to tools/benchmark.py (see its --help).
benchmark: setup
	$(VENV_PYTHON) tools/benchmark.py $(ARGS)

bench: setup
	$(VENV_PYTHON) benchmarks/bench_outlier_synthesis.py
	$(VENV_PYTHON) benchmarks/bench_train_step.py
	$(VENV_PYTHON) benchmarks/bench_feature_scores.py

clean-venv:
	rm -rf $(VENV)
