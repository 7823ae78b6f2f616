"""torchrun data parallelism on CPU (gloo): 2 processes at batch B reproduce 1 process at batch 2B.

One torchrun launch trains every case below on 2 ranks (vae; a DCGAN with BatchNorm in G and the
minibatch-std feature in D; ddpm with dropout; ddpm conditioned on a tensor per example; pix2pix,
whose U-Net has BatchNorm and dropout; vae with batches read by DataLoader workers), a closed-form
family (pca: nothing to all-reduce, no deadlock), a --minutes run (rank 0's clock decides: both
ranks stop at the same step), and finally a GAN run that is killed after its first checkpoint; a
second launch resumes it under torchrun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import genlab
from genlab.io import load_state, load_weights

CASES = {
    "vae": dict(family="vae", data="digits", steps=6, batch_size=8),
    "gan": dict(family="gan", data="digits", steps=6, batch_size=8, net="conv", channels=(8, 16),
                minibatch_std=True, checkpoint_every=3),
    "ddpm": dict(family="ddpm", data="digits", steps=5, batch_size=8, base=16, mults=(1, 2), attention=False,
                 dropout=0.1, warmup_steps=2),
    "ddpm-sr": dict(family="ddpm", data="digits-sr", steps=4, batch_size=8, base=16, mults=(1, 2),
                    attention=False, conditional=True, p_uncond=0.3, warmup_steps=2),
    # image-to-image: a U-Net generator with BatchNorm and dropout (its noise), a PatchGAN critic
    "pix2pix": dict(family="pix2pix", data="digits-sr", steps=4, batch_size=8, base=8, d_base=8),
    # each rank's DataLoader worker reads that rank's batches; the reference holds the data in memory
    "vae-streamed": dict(family="vae", data="digits", steps=6, batch_size=8, stream=True, workers=1),
}

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import genlab
    from genlab.train.callbacks import Callback
    out, cases = sys.argv[1], json.loads(sys.argv[2])
    rank = int(os.environ["RANK"])
    for name, kw in cases.items():
        kw = dict(kw)
        genlab.train(kw.pop("family"), kw.pop("data"), out=f"{out}/{name}", progress=False, log_every=1, **kw)
    genlab.train("pca", "digits", out=f"{out}/pca", progress=False)
    r = genlab.train("ae", "digits", out=f"{out}/minutes", minutes=0.02, batch_size=8, progress=False)
    with open(f"{out}/minutes-rank{rank}.json", "w") as f:
        json.dump({"step": r.history[-1]["step"]}, f)

    class Crash(Callback):  # dies after the step-3 checkpoint, as a killed job would
        def on_step_end(self, trainer):
            if trainer.step == 4:
                os.kill(os.getpid(), signal.SIGKILL)

    kw = dict(cases["gan"])
    genlab.train(kw.pop("family"), kw.pop("data"), out=f"{out}/gan-killed", progress=False, log_every=1,
                 callbacks=[Crash()], **kw)
""")

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    script = out / "ddp_train.py"
    script.write_text(SCRIPT)
    r = subprocess.run([*TORCHRUN, str(script), str(out), json.dumps(CASES)], capture_output=True, text=True,
                       env=ENV, timeout=600)
    if "gloo" in r.stderr.lower() and "not available" in r.stderr.lower():
        pytest.skip("torch was built without gloo")
    assert (out / "minutes-rank1.json").exists(), r.stderr[-3000:]
    assert r.returncode != 0, "the killed run should have failed the first launch"
    return out


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _noise_pinned(model: torch.nn.Module) -> set[str]:
    """Entries a float rounding decides: a bias feeding straight into BatchNorm has a gradient that
    is exactly 0 in exact arithmetic and +-1e-9 of rounding in floats, which Adam turns into
    +-lr steps (no two summation orders agree on it), and the BatchNorm's running mean carries it."""
    pinned = set()
    for prefix, module in model.named_modules():
        children = list(module.named_children())
        for (a, m), (b, nxt) in zip(children, children[1:]):
            if isinstance(nxt, torch.nn.modules.batchnorm._BatchNorm) and getattr(m, "bias", None) is not None:
                pinned |= {f"{prefix}.{a}.bias".lstrip("."), f"{prefix}.{b}.running_mean".lstrip(".")}
    return pinned


@pytest.mark.parametrize("name", list(CASES))
def test_two_ranks_reproduce_one_process_at_the_same_global_batch(ddp_runs, name):
    kw = dict(CASES[name])
    family, data = kw.pop("family"), kw.pop("data")
    kw["batch_size"] *= 2
    kw.pop("stream", None), kw.pop("workers", None)
    single = genlab.train(family, data, save=False, progress=False, log_every=1, **kw)
    ddp = _history(ddp_runs / name)
    assert [h["step"] for h in ddp] == [h["step"] for h in single.history]
    for a, b in zip(single.history, ddp):  # the loss trajectory, every part, every step
        for k in a:
            if k != "time":
                assert abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(a[k])), (a["step"], k, a[k], b[k])
    # the final (EMA) weights; a wrong split or per-rank noise differs by whole Adam steps (~lr)
    weights = load_weights(ddp_runs / name / "model.safetensors")
    pinned = _noise_pinned(single.model)
    for k, v in single.model.state_dict().items():
        if k not in pinned:
            assert torch.allclose(v, weights[k], atol=1e-5, rtol=0), (k, (v - weights[k]).abs().max())
    if pinned and hasattr(single.model, "latent_dim"):  # what they feed is the same function: G(z), batch statistics
        other = genlab.load(ddp_runs / name)
        z = torch.randn(16, single.model.latent_dim, generator=torch.Generator().manual_seed(0))
        single.model.generator.train(), other.generator.train()
        with torch.no_grad():
            assert torch.allclose(single.model.generator(z), other.generator(z), atol=1e-5)


def test_closed_form_and_minutes_budget_agree_across_ranks(ddp_runs):
    assert (ddp_runs / "pca" / "model.safetensors").exists()  # fitted, saved, no rank hung
    steps = [json.loads((ddp_runs / f"minutes-rank{r}.json").read_text())["step"] for r in (0, 1)]
    assert steps[0] == steps[1] > 1  # one clock decided for both ranks
    assert _history(ddp_runs / "minutes")[-1]["step"] == steps[0]
    assert not list(ddp_runs.glob("**/*.tmp*"))  # rank 0 alone wrote, atomically


def test_a_run_killed_under_torchrun_resumes_under_torchrun(ddp_runs):
    killed = ddp_runs / "gan-killed"
    assert load_state(killed / "checkpoint" / "last.pt")["step"] == 3
    assert not (killed / "model.safetensors").exists()
    r = subprocess.run([*TORCHRUN, "-m", "genlab", "resume", str(killed), "--quiet"], capture_output=True,
                       text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # the resumed run ends exactly where the uninterrupted 2-rank run ended
    a, b = load_weights(killed / "model.safetensors"), load_weights(ddp_runs / "gan" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    raw_a = load_state(killed / "checkpoint" / "last.pt")
    raw_b = load_state(ddp_runs / "gan" / "checkpoint" / "last.pt")
    assert raw_a["step"] == raw_b["step"] == 6
    assert all(torch.equal(v, raw_b["model"][k]) for k, v in raw_a["model"].items())
    assert [h["generator/loss"] for h in _history(killed)][-3:] == \
        [h["generator/loss"] for h in _history(ddp_runs / "gan")][-3:]


def test_global_batch_draws_are_the_rows_of_the_one_process_draw():
    """Each random op inside GlobalBatch(n, N, o) gives rows o:o+n of what one process draws for N
    examples, and leaves the generator where that one process leaves it."""
    import torch.nn.functional as F

    from genlab.nn.density import binarize
    from genlab.nn.shard import GlobalBatch

    x = torch.rand(4, 3, 2, 2)
    ops = [lambda n, t: torch.randn(n, 5), lambda n, t: torch.rand((n, 2)), lambda n, t: torch.randint(0, 9, (n,)),
           lambda n, t: torch.randn_like(t), lambda n, t: torch.rand_like(t), lambda n, t: torch.bernoulli(t),
           lambda n, t: torch.empty(n, 3).normal_(), lambda n, t: torch.empty(n, 3).uniform_(-1, 1),
           lambda n, t: F.dropout(t, 0.5, True), lambda n, t: F.dropout2d(t, 0.5, True), lambda n, t: binarize(t)]
    for op in ops:
        full_x = torch.cat([torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(1)), x])
        torch.manual_seed(0)
        full = op(8, full_x)
        after_full = torch.rand(3)
        torch.manual_seed(0)
        with GlobalBatch(4, 8, 4):
            mine = op(4, x)
        after_mine = torch.rand(3)
        assert torch.equal(mine, full[4:8]) and torch.equal(after_mine, after_full)
    torch.manual_seed(0)
    with GlobalBatch(4, 8, 4):  # other shapes are not per-example draws: left alone
        other = torch.randn(3, 5)
    torch.manual_seed(0)
    assert torch.equal(other, torch.randn(3, 5))
