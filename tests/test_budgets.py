"""Budgets and defaults that do not depend on the machine (issue 22): CPU-time budgets, thread counts
from the cores available, "too short" flags on the comparison page, a bounded `genlab eval`, and
data-aware defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

import genlab
from genlab.cli import main


def _steps(minutes: float) -> int:
    run = genlab.train("ae", "8gaussians", minutes=minutes, save=False, progress=False, seed=0,
                       data_options={"n_train": 2000, "n_test": 200})
    return run.history[-1]["step"]


def test_cpu_budget_gives_the_same_steps_beside_busy_processes():
    """The default clock on a CPU is process CPU time: with a spinning process per core beside it, a
    3-CPU-second run makes nearly the steps it makes alone (a wall-clock budget would lose a third
    or more of them, as the wall-clock check at the end shows)."""
    _steps(0.2 / 60)  # warm-up: imports, first-call kernels
    alone = _steps(3 / 60)
    cores = len(os.sched_getaffinity(0))
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.3)
        t0 = time.perf_counter()
        busy = _steps(3 / 60)
        wall = time.perf_counter() - t0
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert busy / alone > 0.7, (alone, busy)
    # the run lasted longer than 3 s of wall time: the budget counted only this process's CPU time
    assert wall > 3.0, wall


def test_default_clock_threads_and_minimum_are_recorded(tmp_path):
    run = genlab.train("ae", "8gaussians", out=tmp_path / "r", minutes=0.5 / 60, progress=False,
                       data_options={"n_train": 500, "n_test": 100})
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["train"]["clock"] == "cpu"  # "auto" resolved on a CPU, recorded so a resume counts alike
    assert cfg["torch_threads"] == torch.get_num_threads()
    assert cfg["min_train_steps"] == genlab.MODELS["ae"].min_train_steps
    # the recorded elapsed time is CPU time: never more than the process used
    assert run.history[-1]["time"] <= time.process_time()


def test_available_cores_reads_affinity_and_cgroup_quota(tmp_path):
    from genlab.train.threads import available_cores

    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # cgroup v2: 1.5 CPUs -> 2 threads at most
    assert available_cores(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU -> one thread
    assert available_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no quota: the affinity mask decides
    assert available_cores(tmp_path) == affinity
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1: 1 CPU
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(v1) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert available_cores(v1) == affinity


def test_cli_uses_the_available_cores_and_restores_the_count(tmp_path, monkeypatch, capsys):
    from genlab.train import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("GENLAB_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda *a: 3)
    seen = []
    monkeypatch.setitem(__import__("genlab.cli").cli.COMMANDS, "eval", lambda a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    assert main(["eval", str(tmp_path)]) == 0
    assert seen == [3] and torch.get_num_threads() == before
    monkeypatch.setenv("GENLAB_THREADS", "2")  # the user's choice wins
    assert main(["eval", str(tmp_path)]) == 0
    assert seen == [3, 2] and torch.get_num_threads() == before


def test_compare_page_flags_a_family_trained_too_briefly(tmp_path):
    from genlab.workflows.compare import compare

    res = compare("8gaussians", ["pca", "ae"], steps=2, out=tmp_path / "c", n=200, progress=False, nll_seconds=5)
    fam = {e["name"]: e for e in res["families"]}
    assert fam["ae"]["train"]["too_short"] and fam["ae"]["train"]["min_steps"] == 100
    assert "too_short" not in fam["pca"]["train"]  # a closed-form fit has no steps to count
    html = (tmp_path / "c" / "report.html").read_text()
    assert 'id="too-short"' in html and "ae (2 of at least 100 steps)" in html
    row = html[html.index('<table id="metrics"'):]
    assert '<th scope="row">ae <span class="badge short"' in row
    assert '<th scope="row">pca <span class="badge' not in row
    assert "1 trained too briefly" in html
    # a run given enough steps is not flagged
    from genlab.workflows.compare import _train_record

    run = genlab.train("ae", "8gaussians", out=tmp_path / "long", steps=100, progress=False,
                       data_options={"n_train": 500, "n_test": 100})
    assert _train_record(run.path)["too_short"] is False


def test_eval_nll_seconds_bounds_the_likelihood_and_says_on_how_many(tmp_path, capsys):
    run = genlab.train("vae", "8gaussians", out=tmp_path / "v", steps=5, progress=False,
                       data_options={"n_train": 500, "n_test": 2000})
    # the VAE's likelihood (1000 importance samples per example) takes ~20 s for 2000 examples here
    t0 = time.perf_counter()
    assert main(["eval", str(run.path), "--metrics", "nll", "--nll-seconds", "1", "--json"]) == 0
    took = time.perf_counter() - t0
    result = json.loads(capsys.readouterr().out)
    k = result["nll_examples"]
    assert 8 <= k < 2000 and result["nll_seconds"] == 1
    assert f"on {k} of the 2000 reference examples" in result["notes"]["nll"]
    assert result["seconds"]["nll"] < 5 and took < 20, (result["seconds"], took)
    saved = json.loads((run.path / "eval.json").read_text())
    assert saved["nll_examples"] == k
    # the estimate is the mean over the first k of the seeded reference permutation
    data = genlab.load_dataset("8gaussians", n_train=500, n_test=2000)
    idx = torch.randperm(2000, generator=torch.Generator().manual_seed(0))[:k]
    torch.manual_seed(0)
    with torch.no_grad():
        direct = -genlab.load(run.path).log_prob(data.test[idx]).mean().item()
    assert result["metrics"]["nll"] == pytest.approx(direct, abs=0.05)


def test_gan_on_the_ring_with_no_options_gets_data_aware_defaults():
    """The GAN's fixed defaults (64-D code) put 2.4% of samples near a mode after a minute on the ring;
    its data-aware defaults (2-D code, minibatch std) are chosen, recorded, and do far better at the
    same seeded step budget. (A ring of sigma 0.05 rather than 0.01, so that a few seconds show it:
    measured at 600 steps, seed 0: 8 modes and 47% of samples within 3 sigma, against 0 and 0%.)"""
    from genlab.data.toy2d import mode_centers
    from genlab.metrics.modes import mode_coverage

    ring = genlab.load_dataset("8gaussians", n_train=4000, n_test=500, sigma=0.05)

    def hq(run):
        x = run.model.sample(2500, generator=torch.Generator().manual_seed(1))
        return mode_coverage(x, mode_centers("8gaussians"), 0.05)

    run = genlab.train("gan", ring, steps=STEPS, progress=False, seed=0, save=False)
    assert run.model.config["latent_dim"] == 2 and run.model.config["minibatch_std"] is True
    assert run.model.derived_defaults["hparams"] == {"latent_dim": 2, "minibatch_std": True,
                                                     "hidden": (128, 128, 128), "sampling": "auto"}  # -> config.json
    assert run.model.derived_defaults["train"] == {"lr": 1e-3, "batch_size": 128}
    assert run.model.derived_defaults["data"] == {"kind": "vector", "dim": 2, "n_train": 4000}
    fixed = genlab.train("gan", ring, steps=STEPS, progress=False, seed=0, save=False, latent_dim=64,
                         minibatch_std=False, hidden=[256, 256], lr=2e-4, batch_size=64, sampling="plain")
    new, old = hq(run), hq(fixed)
    assert new["high_quality"] > max(4 * old["high_quality"], GAN_HQ_FLOOR), (new, old)
    assert new["modes"] >= 7


STEPS, GAN_HQ_FLOOR = 600, 0.25


def test_a_value_the_user_gives_beats_the_data_aware_default(tmp_path):
    run = genlab.train("gan", "8gaussians", out=tmp_path / "g", steps=1, progress=False, latent_dim=8,
                       data_options={"n_train": 200, "n_test": 100})
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["hparams"]["latent_dim"] == 8 and cfg["hparams"]["minibatch_std"] is True
    assert cfg["data_defaults"]["hparams"] == {"minibatch_std": True, "hidden": [128, 128, 128], "sampling": "auto"}
    assert cfg["data_defaults"]["data"] == {"kind": "vector", "dim": 2, "n_train": 200}
    # images keep the fixed network (small ones, like the digits, take only a larger learning rate)
    run = genlab.train("gan", "digits", out=tmp_path / "d", steps=1, progress=False)
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["hparams"]["latent_dim"] == 64 and cfg["data_defaults"]["hparams"] == {}
    # resuming rebuilds the model from the recorded hyperparameters, not from the data again
    loaded = genlab.load(tmp_path / "g")
    assert loaded.latent_dim == 8 and loaded.default_rejection  # the recorded sampling, too


def test_nll_subset_times_a_slow_likelihood_once_and_scores_the_fewest():
    """A likelihood whose first 8 examples already take the whole limit is not timed a second time
    (each probe of a barely trained fm costs ~30 s on digits), and the metric scores those 8; a fast
    one scores all n."""
    import time as _time

    from genlab.metrics.evaluate import NLL_PROBE, nll_subset

    class Slow:
        device = torch.device("cpu")

        def __init__(self, seconds):
            self.seconds, self.calls = seconds, 0

        def log_prob(self, x, y=None):
            self.calls += 1
            _time.sleep(self.seconds)
            return torch.zeros(len(x))

    x = torch.zeros(360, 4)
    slow = Slow(0.2)
    assert nll_subset(slow, x, None, 360, limit=0.1) == NLL_PROBE and slow.calls == 1
    fast = Slow(0.0)
    assert nll_subset(fast, x, None, 360, limit=10.0) == 360 and fast.calls == 1
