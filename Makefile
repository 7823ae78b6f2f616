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

# The main job: every registered family trained on the embedded digits, evaluated under one protocol,
# on one self-contained page, with one latent model (ddpm@vae: diffusion over the VAE's codes).
# DEMO_MINUTES of training in total (process CPU time, so the page does not change beside other jobs),
# split by family weight (ddpm, fm and pixelcnn 2, the others 1; families trained too briefly are flagged
# on the page), then evaluation. Measured on 2 quiet cores (2026-12-02, commit 83bd3d8): 3 min 46 s wall for
# the compare command below; every family past its minimum steps (ddpm 286, fm 300, pixelcnn 177); the
# longest evaluations are ddpm's and fm's (20 s and 16 s: sampling and likelihood) and pixelcnn's (11 s).
DEMO_MINUTES ?= 2.5
DEMO_MODELS ?= all,ddpm@vae
demo: $(VENV)/.genlab
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/genlab compare --data digits --minutes $(DEMO_MINUTES) --models $(DEMO_MODELS) --nll-seconds 10 --out $(DEMO_OUT)
	@echo "open $(DEMO_OUT)/report.html in a browser (each family's run directory is in $(DEMO_OUT)/)"

test: $(VENV)/.genlab-dev
	$(PY) -m pytest -q -n 2 --dist loadfile

# Side-by-side benchmarks (long: see docs/benchmarks.md for each one's budget and results).
# torchcfm goes in with --no-deps: its dependency torchdyn would pull torchvision.
bench: $(VENV)/.genlab-dev
	$(PIP) -e '.[bench]'
	$(PIP) --no-deps 'torchcfm>=1.0'
	$(PY) bench/metrics.py
	$(PY) bench/gan_modes.py
	$(PY) bench/flows.py
	$(PY) bench/diffusion.py --pair all
	$(PY) bench/vae_mnist.py

lint: $(VENV)/.genlab-dev
	$(PY) -m pip install --quiet -c constraints.txt pyflakes && $(PY) -m pyflakes src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
