# genlab — the README's commands. Everything runs inside .venv with the pinned torch.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
DEMO_OUT ?= runs/demo

.PHONY: demo test bench lint install clean

$(VENV)/.genlab: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

$(VENV)/.genlab-dev: $(VENV)/.genlab
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.genlab

# The main job: train a VAE on the embedded digits and write samples, reconstructions and a loss curve.
demo: $(VENV)/.genlab
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/genlab train vae --data digits --epochs 150 --out $(DEMO_OUT)
	@echo "results: $(DEMO_OUT)/samples.png $(DEMO_OUT)/reconstructions.png $(DEMO_OUT)/loss.png"

test: $(VENV)/.genlab-dev
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(VENV)/.genlab-dev
	$(PIP) -e '.[bench]'
	$(PY) bench/vae_mnist.py

lint: $(VENV)/.genlab-dev
	$(PY) -m pip install --quiet -c constraints.txt pyflakes && $(PY) -m pyflakes src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
