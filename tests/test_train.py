"""Trainer: kill-and-resume equivalence, NaN stop, multi-player steps, schedules, EMA, budgets."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import pytest
import torch

import genlab
from genlab.train.config import TrainConfig
from genlab.errors import ConfigError, GenlabError, TrainingDiverged
from genlab.models.base import GenerativeModel, Player, register_model
from conftest import crash_after
from genlab.train.trainer import CHECKPOINT


SETTINGS = dict(checkpoint_every=10, log_every=5, ema_decay=0.9, lr_schedule="cosine", warmup_steps=5,
                grad_clip=5.0, batch_size=64)


@pytest.mark.parametrize("family,extra", [("vae", {}), ("ae", {"corruption": "gaussian"})])
def test_killed_and_resumed_run_ends_with_identical_weights(family, extra, digits, tmp_path):
    full = genlab.train(family, digits, tmp_path / "full", steps=47, progress=False, **SETTINGS, **extra)
    with pytest.raises(KeyboardInterrupt):
        genlab.train(family, digits, tmp_path / "cut", steps=47, progress=False, callbacks=[crash_after(33)],
                     **SETTINGS, **extra)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    state = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    assert state["step"] == 30  # the last checkpoint before the crash
    resumed = genlab.resume(tmp_path / "cut", progress=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the saved (EMA) weights are identical too
    la, lb = genlab.load(tmp_path / "full"), genlab.load(tmp_path / "cut")
    for k, v in la.state_dict().items():
        assert torch.equal(v, lb.state_dict()[k])


def test_resume_with_new_budget_extends_and_reloads_from_disk(digits, tmp_path):
    genlab.train("vae", digits, tmp_path / "r", steps=12, progress=False, checkpoint_every=4)
    run = genlab.resume(tmp_path / "r", steps=8, progress=False)
    assert run.history[-1]["step"] == 20
    assert json.loads((tmp_path / "r" / "config.json").read_text())["budget"] == {"steps": 20}


@register_model("_nan_test")
class Exploding(GenerativeModel):
    """A model whose loss turns NaN after a few steps."""

    def __init__(self, spec, hidden: int = 4):
        super().__init__(spec)
        self.w = torch.nn.Parameter(torch.ones(1))
        self.calls = 0

    def loss(self, x, y=None):
        self.calls += 1
        scale = float("nan") if self.calls > 12 else 1.0
        return {"loss": (self.w * x.mean() * scale) ** 2}

    def sample(self, n, y=None, generator=None):
        return torch.zeros(n, *self.spec.shape)


def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(digits, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"step 1[3-5].*loss became nan.*checkpoint"):
        genlab.train("_nan_test", digits, tmp_path / "n", steps=100, progress=False, checkpoint_every=10,
                     log_every=5)
    state = torch.load(tmp_path / "n" / CHECKPOINT, weights_only=True)
    assert state["step"] == 10 and torch.isfinite(state["model"]["w"]).all()


@register_model("_two_player_test")
class TwoPlayer(GenerativeModel):
    """Minimal adversarial-style model: two parameter groups, two objectives, n_critic steps."""

    def __init__(self, spec, n_critic: int = 3):
        super().__init__(spec)
        self.a = torch.nn.Parameter(torch.zeros(1))
        self.b = torch.nn.Parameter(torch.zeros(1))
        self.n_critic = n_critic
        self.calls = []

    def players(self):
        return [Player("critic", [self.a], "critic_loss", self.n_critic, {"lr": 0.1}),
                Player("generator", [self.b], "generator_loss", 1)]

    def ema_names(self):
        return ["b"]

    def critic_loss(self, x, y=None):
        self.calls.append("critic")
        return {"loss": (self.a - 1) ** 2 + 0 * self.b.sum()}

    def generator_loss(self, x, y=None):
        self.calls.append("generator")
        return {"loss": (self.b + 1) ** 2 + 0 * self.a.sum()}

    def sample(self, n, y=None, generator=None):
        return self.b.expand(n, 2)


def test_players_alternate_with_own_optimizers_and_parameters():
    ds = genlab.load_dataset("8gaussians", n_train=512, n_test=64)
    run = genlab.train("_two_player_test", ds, steps=200, progress=False, save=False, lr=0.05,
                       ema_decay=0.5, batch_size=64)
    m = run.model
    assert m.calls[:8] == ["critic"] * 3 + ["generator"] + ["critic"] * 3 + ["generator"]
    assert abs(m.a.item() - 1) < 0.05 and abs(m.b.item() + 1) < 0.05
    rec = run.history[-1]
    assert "critic/loss" in rec and "generator/loss" in rec
    # one training step consumes n_critic + 1 batches: 8 batches per epoch of 512 / 64 -> 2 steps per epoch
    assert rec["epoch"] == pytest.approx(200 * 4 / 8)


def test_lr_warmup_and_cosine_schedule(digits):
    run = genlab.train("vae", digits, steps=100, lr=1e-2, warmup_steps=10, lr_schedule="cosine", log_every=1,
                       save=False, progress=False)
    lrs = [r["lr"] for r in run.history]
    assert lrs[0] == pytest.approx(1e-2 * 0.1 * 1)  # step 0: warmup 1/10, cosine at progress 0
    assert lrs[9] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 0.09)), rel=1e-6)
    assert lrs[-1] < 1e-4
    # ddpm's noise `schedule` and the Trainer's `lr_schedule` are two settings, not one name for both
    run = genlab.train("ddpm", digits, steps=2, schedule="cosine", lr_schedule="linear", warmup_steps=0, base=8,
                       mults=(1,), log_every=1, save=False, progress=False)
    assert run.model.schedule.kind == "cosine"
    assert run.history[1]["lr"] == pytest.approx(run.history[0]["lr"] / 2)  # linear decay over 2 steps
    # run directories written before the rename still load
    assert TrainConfig.from_dict({"schedule": "cosine", "lr": 0.1}).lr_schedule == "cosine"


def test_same_seed_same_weights_different_seed_different(digits):
    a = genlab.train("vae", digits, steps=10, seed=3, save=False, progress=False).model.state_dict()
    b = genlab.train("vae", digits, steps=10, seed=3, save=False, progress=False).model.state_dict()
    c = genlab.train("vae", digits, steps=10, seed=4, save=False, progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_minutes_budget_and_bf16_autocast(digits):
    run = genlab.train("ae", digits, minutes=0.02, precision="bf16", save=False, progress=False)
    assert 0 < run.history[-1]["time"] < 5 and math.isfinite(run.history[-1]["loss"])


@pytest.mark.parametrize("native", [True, False])
def test_emulated_low_precision_on_a_cpu_is_named(native, digits, monkeypatch):
    """bf16 on a CPU without native bf16 instructions (AVX2) is emulated, 30x slower than fp32: said once."""
    from genlab.train import trainer

    monkeypatch.setattr(trainer, "native_cpu_precision", lambda precision: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = genlab.train("ae", digits, steps=1, precision="bf16", save=False, progress=False)
        fp32 = genlab.train("ae", digits, steps=1, save=False, progress=False)
    said = [str(w.message) for w in caught if "is emulated" in str(w.message)]
    assert len(said) == (0 if native else 1) and not fp32.warnings
    assert [w for w in run.warnings if "is emulated" in w] == said
    if not native:
        assert "precision=bf16 on this CPU" in said[0] and "--set precision=fp32" in said[0]


@pytest.mark.parametrize("avx512_bf16, amx, native", [(True, False, True), (False, True, True), (False, False, False)])
def test_bf16_is_native_only_with_avx512_bf16_or_amx_on_x86(avx512_bf16, amx, native, monkeypatch):
    """oneDNN calls bf16 supported on plain AVX512 too, where fm's UNet step ran at half fp32's speed:
    on an x86 CPU genlab asks for the instructions themselves."""
    from genlab.train import trainer

    monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert trainer.native_cpu_precision("bf16") is native
    assert (trainer.emulated_precision(torch.device("cpu"), "bf16") is None) is native
    assert trainer.emulated_precision(torch.device("cpu"), "fp32") is None


def test_fp16_scales_the_loss_and_resumes_bit_exactly(digits, tmp_path):
    """fp16 autocast with a gradient scaler per player: the first steps' scaled gradients overflow
    fp16, those steps are skipped and the scale halved (the scaler's state is in the checkpoint, so a
    resumed run ends where an uninterrupted one does), and the run learns as fp32 does."""
    kw = dict(steps=40, progress=False, checkpoint_every=10, log_every=5, batch_size=64, seed=1)
    full = genlab.train("gan", digits, tmp_path / "full", precision="fp16", **kw)
    scalers = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)["scalers"]
    assert len(scalers) == 2 and all(s["scale"] < 2.0 ** 16 for s in scalers), scalers  # overflowed at least once
    with pytest.raises(KeyboardInterrupt):
        genlab.train("gan", digits, tmp_path / "cut", precision="fp16", callbacks=[crash_after(25)], **kw)
    resumed = genlab.resume(tmp_path / "cut", progress=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    kw.update(steps=150, checkpoint_every=0, log_every=25)
    fp32, fp16 = (genlab.train("vae", digits, save=False, precision=p, **kw).history for p in ("fp32", "fp16"))
    assert fp16[-1]["loss"] < 0.9 * fp16[0]["loss"], fp16  # it learns, and as fp32 does
    assert abs(fp16[-1]["loss"] - fp32[-1]["loss"]) < 0.03 * fp32[-1]["loss"], (fp32, fp16)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="torch.compile needs a C compiler")
def test_compiled_training_step_follows_the_eager_run(digits):
    """compile=true compiles the training step (the eager run's random draws, fallback_random), so the
    loss trajectory is the eager one's up to the fused kernels' rounding; sampling is not compiled."""
    kw = dict(steps=30, log_every=5, batch_size=64, seed=2, save=False, progress=False, hidden=[32], net="mlp")
    eager = genlab.train("vae", digits, **kw)
    compiled = genlab.train("vae", digits, compile=True, **kw)
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
    assert not hasattr(compiled.model, "_orig_mod")  # the model itself is the plain module


def test_bad_settings_and_existing_run(digits, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        genlab.train("vae", digits, steps=1, batchsize=3, save=False)
    with pytest.raises(ConfigError, match="exactly one budget"):
        genlab.train("vae", digits, steps=1, epochs=1, save=False)
    with pytest.raises(ConfigError, match="invalid lr"):
        genlab.train("vae", digits, steps=1, lr=-1, save=False)
    genlab.train("pca", digits, tmp_path / "p", progress=False)
    with pytest.raises(GenlabError, match="already holds a run"):
        genlab.train("pca", digits, tmp_path / "p", progress=False)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the test writes a hostile pickle on purpose
def test_checkpoint_loading_never_unpickles_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "last.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    from genlab.io import load_state

    with pytest.raises(GenlabError, match="refused: it holds Python objects other than tensors"):
        load_state(path)
