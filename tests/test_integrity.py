"""Run integrity: a run's data fingerprint (changed or moved data), diverged runs that leave a way on,
NaN/Inf never saved, a discriminator that wins outright, and memory / disk estimated before training."""

import json
import resource
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import genlab
from genlab.cli import main
from genlab.data import load_dataset
from genlab.data.fingerprint import differences, fingerprint
from genlab.data.spec import DataSpec
from genlab.errors import ConfigError, DataError, GenlabError, TrainingDiverged
from genlab.io import load_state
from genlab.train import resources
from genlab.train.callbacks import Callback, DiscriminatorWatch
from genlab.train.config import TrainConfig
from genlab.train.run import run_data

FAST = dict(progress=False, log_every=1)


def _table(path, seed=0, n=120):
    x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    np.save(path, x)
    return x


def _weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


# -- the data fingerprint ------------------------------------------------------------------------------
def test_replaced_npy_is_refused_by_eval_and_resume_until_allowed(in_tmp, capsys):
    _table("d.npy", seed=0)
    genlab.train("vae", "d.npy", "run", steps=2, **FAST)
    fp = json.loads(Path("run/config.json").read_text())["data_fingerprint"]
    assert fp["n_train"] == 96 and fp["shape"] == [3] and len(fp["arrays"]) == 64 and fp["files"]["count"] == 1
    _table("d.npy", seed=1)  # same size and shape, other values
    capsys.readouterr()
    assert main(["eval", "run", "--metrics", "mmd", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genlab: error: run: its data changed since training (d: different values")
    assert "--data PATH" in err and "--allow-changed-data" in err and "\n" not in err
    assert main(["resume", "run", "--steps", "1", "--quiet"]) == 2
    assert "its data changed" in capsys.readouterr().err
    assert main(["eval", "run", "--metrics", "mmd", "--json", "--allow-changed-data"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["mmd"] >= 0
    _table("d.npy", n=150)  # more rows: the message says so
    with pytest.raises(DataError, match=r"96 -> 120 training examples"):
        run_data("run")


def test_moved_data_is_pointed_at_with_data_and_recorded_by_resume(in_tmp, capsys):
    _table("d.npy")
    genlab.train("vae", "d.npy", "run", steps=2, **FAST)
    Path("moved").mkdir()
    shutil.move("d.npy", "moved/e.npy")
    capsys.readouterr()
    assert main(["eval", "run", "--metrics", "mmd", "--json"]) == 2
    assert "d.npy is gone (moved or deleted?); give its new location with --data PATH" in capsys.readouterr().err
    assert main(["eval", "run", "--metrics", "mmd", "--json", "--data", "moved/e.npy"]) == 0
    assert main(["resume", "run", "--steps", "1", "--quiet", "--data", "moved/e.npy"]) == 0
    cfg = json.loads(Path("run/config.json").read_text())
    assert cfg["data"]["source"]["name"] == str(Path("moved/e.npy").resolve()) and "data_previous" not in cfg
    capsys.readouterr()
    assert main(["eval", "run", "--metrics", "mmd", "--json"]) == 0  # the run now knows where its data is
    _table("other.npy", seed=5)  # --data naming other data is still checked
    assert main(["eval", "run", "--metrics", "mmd", "--json", "--data", "other.npy"]) == 2
    assert "its data changed" in capsys.readouterr().err


def test_resume_on_changed_data_when_allowed_keeps_the_old_fingerprint(in_tmp):
    _table("d.npy")
    genlab.train("vae", "d.npy", "run", steps=2, **FAST)
    old = json.loads(Path("run/config.json").read_text())["data_fingerprint"]
    _table("new.npy", seed=3)
    genlab.resume("run", steps=1, progress=False, data="new.npy", allow_changed_data=True)
    cfg = json.loads(Path("run/config.json").read_text())
    assert cfg["data_previous"] == [{"step": 2, "fingerprint": old}]
    assert cfg["data_fingerprint"]["arrays"] != old["arrays"]
    assert run_data("run").spec.name == "new"  # checked against the new fingerprint from now on


def test_report_and_explore_check_the_data_too(in_tmp, capsys):
    _table("d.npy", seed=0)
    genlab.train("ae", "d.npy", "a", steps=1, **FAST)
    _table("d.npy", seed=1)
    genlab.train("ae", "d.npy", "b", steps=1, **FAST)  # the same file name, other contents
    capsys.readouterr()
    assert main(["report", "a", "b", "--out", "page.html", "--quiet"]) == 2
    assert "these runs were trained on different data" in capsys.readouterr().err
    assert main(["report", "a", "--out", "page.html", "--quiet"]) == 2
    assert "a: its data changed since training (d: different values" in capsys.readouterr().err
    assert main(["explore", "a", "--what", "map"]) == 2
    assert "a: its data changed since training" in capsys.readouterr().err
    assert not Path("page.html").exists()


def test_builtin_sets_fingerprint_their_arrays(digits):
    a = fingerprint(digits)
    assert a == fingerprint(load_dataset("digits")) and "arrays" in a and "files" not in a and a["n_train"] == 1437
    assert differences(a, fingerprint(digits.select_classes([0, 1])))[0].endswith("training examples")
    other = load_dataset("digits")
    other.train[0, 0, 0, 0] += 0.5  # one pixel
    assert differences(a, fingerprint(other))[0].startswith("different values (SHA-256")
    toy = fingerprint(load_dataset("8gaussians"))
    assert toy == fingerprint(load_dataset("8gaussians")) and toy != fingerprint(load_dataset("8gaussians", sigma=0.1))


def test_streamed_folder_is_fingerprinted_by_its_files(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ds = load_dataset(str(tmp_path), stream=True)
    fp = fingerprint(ds)
    assert "arrays" not in fp and fp["files"]["count"] == 6
    assert fingerprint(load_dataset(str(tmp_path), stream=False))["files"] == fp["files"]  # in memory: both
    Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "3.png")  # replaced image
    changed = differences(fp, fingerprint(load_dataset(str(tmp_path), stream=True)))
    assert len(changed) == 1 and changed[0].startswith("different files (6 file(s)")
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(tmp_path, moved)  # a copy (new mtimes, new place) keeps the fingerprint
    assert fingerprint(load_dataset(str(moved), stream=True))["files"] == \
        fingerprint(load_dataset(str(tmp_path), stream=True))["files"]


def test_runs_without_a_fingerprint_are_not_checked(tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(Path(__file__).parent / "data" / "runs-0.1" / "vae", run)
    assert "data_fingerprint" not in json.loads((run / "config.json").read_text())
    assert run_data(run).spec.name == "digits"


# -- diverged runs -----------------------------------------------------------------------------------
class _NanAfter:
    """Patch a family's loss to become NaN from call `k` on."""

    def __init__(self, monkeypatch, cls, k):
        self.calls, orig = 0, cls.loss

        def loss(model, x, y=None):
            self.calls += 1
            out = orig(model, x, y)
            if self.calls > k:
                out["loss"] = out["loss"] * float("nan")
            return out

        monkeypatch.setattr(cls, "loss", loss)


def test_nan_loss_stops_keeps_the_last_good_checkpoint_and_says_what_to_do(in_tmp, monkeypatch, capsys):
    from genlab.models.vae import VAE

    with monkeypatch.context() as m, pytest.raises(TrainingDiverged) as e:
        _NanAfter(m, VAE, 12)
        genlab.train("vae", "8gaussians", "run", steps=20, progress=False, log_every=5, checkpoint_every=10)
    msg = str(e.value)
    assert msg.startswith("training stopped at step 15: loss became nan; the last good checkpoint (step 10) is kept")
    for remedy in ("a lower lr (now 0.001)", "grad_clip=1", "a look at the data"):
        assert remedy in msg
    assert "`genlab resume run --set lr=0.0001 --set grad_clip=1`" in msg and "\n" not in msg
    state = load_state(Path("run/checkpoint/last.pt"))
    assert state["step"] == 10 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert not Path("run/model.safetensors").exists()
    capsys.readouterr()
    assert main(["resume", "run", "--quiet", "--set", "lr=0.0001", "--set", "grad_clip=1"]) == 0  # the step it names
    cfg = json.loads(Path("run/config.json").read_text())
    assert cfg["train"]["lr"] == 0.0001 and cfg["train"]["grad_clip"] == 1
    assert all(torch.isfinite(v).all() for v in genlab.load("run").state_dict().values())
    assert main(["resume", "run", "--steps", "1", "--quiet", "--set", "latent_dim=3"]) == 2
    assert "latent_dim of a trained run cannot change" in capsys.readouterr().err


def test_nan_weights_are_never_checkpointed_nor_saved(in_tmp):
    class Poison(Callback):  # an average that overflowed while the loss stayed finite
        def on_step_end(self, trainer):
            if trainer.step == 7:
                next(iter(trainer.ema.shadow.values())).fill_(float("inf"))

    with pytest.raises(TrainingDiverged, match=r"at step 10: the weights became NaN or Inf \(EMA .*\); the last "
                                               r"good checkpoint \(step 5\)"):
        genlab.train("ae", "8gaussians", "run", steps=20, progress=False, log_every=20, checkpoint_every=5,
                     ema_decay=0.9, callbacks=[Poison()])
    assert load_state(Path("run/checkpoint/last.pt"))["step"] == 5 and not Path("run/model.safetensors").exists()


def test_a_run_stopped_before_its_first_periodic_checkpoint_resumes_bit_exact(in_tmp):
    class Stop(Callback):
        def on_step_end(self, trainer):
            if trainer.step == 3:
                raise KeyboardInterrupt

    kw = dict(steps=6, progress=False, log_every=2, seed=1)
    whole = genlab.train("vae", "8gaussians", "a", **kw)
    with pytest.raises(KeyboardInterrupt):
        genlab.train("vae", "8gaussians", "b", callbacks=[Stop()], **kw)
    assert load_state(Path("b/checkpoint/last.pt"))["step"] == 0  # written before the first step
    resumed = genlab.resume("b", progress=False)
    for k, v in _weights(whole.model).items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_divergence_before_anything_resumable_removes_the_run(in_tmp, monkeypatch, capsys):
    """The issue's 2-row .npy: a NaN standardisation before the first step. Nothing can be kept, so the
    folder is removed (it would block `train --out`), and the same command works once the data is fixed."""
    from genlab.models.base import GenerativeModel

    orig = GenerativeModel.prepare

    def nan_prepare(self, data):
        orig(self, data)
        self.data_scale.fill_(float("nan"))

    with monkeypatch.context() as m:
        m.setattr(GenerativeModel, "prepare", nan_prepare)
        assert main(["train", "vae", "--data", "8gaussians", "--steps", "3", "--out", "run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "at step 0: the weights became NaN or Inf (data_scale)" in err and "run was removed" in err
    assert not Path("run").exists()
    assert main(["train", "vae", "--data", "8gaussians", "--steps", "3", "--out", "run", "--quiet"]) == 0


def test_resume_without_a_checkpoint_starts_over_or_names_how_to(in_tmp, capsys):
    """Killed before its first checkpoint (config.json, no checkpoint, no weights): `resume` trains it
    from step 0, the same run (tests/test_faults.py checks the weights). With final weights but no
    checkpoint, there is nothing to resume: the message names the command that starts over."""
    genlab.train("vae", "8gaussians", "run", steps=2, **FAST)
    shutil.rmtree("run/checkpoint")
    Path("run/model.safetensors").unlink()  # e.g. a run killed before its first checkpoint
    assert main(["resume", "run", "--quiet"]) == 0
    assert genlab.load("run") is not None and Path("run/checkpoint/last.pt").exists()
    capsys.readouterr()
    shutil.rmtree("run/checkpoint")  # final weights, no checkpoint
    assert main(["resume", "run", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("genlab: error: run: no checkpoint to resume from (its final weights are saved: nothing to "
                   "resume); start over: remove it, or train into a new directory: genlab train vae --data 8gaussians "
                   + " ".join(f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}"
                              for k, v in json.loads(Path("run/config.json").read_text())["hparams"].items())
                   + " --out NEW_DIR")


# -- a discriminator that wins outright ---------------------------------------------------------------
def test_discriminator_watch_warns_once_after_a_streak(capsys):
    w, t = DiscriminatorWatch(patience=3), SimpleNamespace(warnings=[], model=None)
    for step, acc in enumerate([1.0, 1.0, 0.9, 1.0, 1.0, 0.995, 1.0, 1.0, 1.0], start=1):
        w.on_log(t, {"step": step, "discriminator/d_acc": acc})
    assert len(t.warnings) == 1 and "since step 4" in t.warnings[0] and "in 3 logged steps" in t.warnings[0]
    assert capsys.readouterr().err.strip() == t.warnings[0]
    w2 = DiscriminatorWatch(patience=3)
    for step in range(1, 10):  # never at the level: no warning
        w2.on_log(t, {"step": step, "discriminator/d_acc": 0.9})
    assert len(t.warnings) == 1
    w3, t3 = DiscriminatorWatch(patience=2), SimpleNamespace(warnings=[], model=SimpleNamespace(generator_supervision="L1"))
    for step in range(1, 4):  # pix2pix: its generator still learns from L1, and the warning says so
        w3.on_log(t3, {"step": step, "discriminator/d_acc": 1.0})
    assert "learns from its L1 term alone" in t3.warnings[0] and "learns little" not in t3.warnings[0]
    capsys.readouterr()


def test_a_gan_whose_discriminator_wins_gets_one_warning(capsys):
    ds = load_dataset("8gaussians")
    run = genlab.train("gan", ds, steps=40, save=False, progress=False, log_every=2, lr=1e-7, d_lr=1e-2,
                       ema_decay=None)
    assert len(run.warnings) == 1 and "the discriminator has won outright" in run.warnings[0]
    assert capsys.readouterr().err.count("won outright") == 1
    assert run.history[-1]["discriminator/d_acc"] == 1.0


# -- memory and disk, estimated before training ------------------------------------------------------------
def test_a_large_image_model_is_refused_before_anything_is_allocated(monkeypatch):
    """The issue's case: 1024x1024 RGB images and the vae's defaults, 822 MB of weights."""
    spec = DataSpec("image", (3, 1024, 1024), name="photos", levels=256)
    big = SimpleNamespace(spec=spec, train=range(3))
    config = TrainConfig(**genlab.models.get_family("vae").train_defaults)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    est = resources.estimate("vae", spec, {}, config, 3)
    assert est.weight_bytes == pytest.approx(822e6, rel=0.01)  # what the run built
    assert est.optimizer_bytes == pytest.approx(3 * est.weight_bytes, rel=0.01)
    assert est.activation_bytes > 3 * 4 * 3 * 1024 * 1024  # at least the batch itself
    monkeypatch.setattr(resources, "available_memory", lambda device=None: (4 * 10**9, "available memory"))
    with pytest.raises(ConfigError) as e:
        resources.check("vae", big, {}, config, size_option=True)
    msg = str(e.value)
    assert msg.startswith("training this vae on 3x1024x1024 images needs about")
    assert "this machine has 4.0 GB (available memory)" in msg and "--set data.size=" in msg
    size = int(msg.split("--set data.size=")[1].split()[0])
    assert 4 <= size < 1024
    assert resources.estimate("vae", DataSpec("image", (3, size, size), levels=256), {}, config, 3).total <= 4e9
    assert time.perf_counter() - t0 < 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 300 * 1024  # KB: nothing of 822 MB


def test_train_refuses_a_folder_too_large_for_memory_and_leaves_nothing(in_tmp, monkeypatch, capsys):
    from PIL import Image

    Path("photos").mkdir()
    for i in range(4):
        Image.fromarray(np.full((128, 128, 3), 40 * i, np.uint8)).save(f"photos/{i}.png")
    monkeypatch.setattr(resources, "available_memory", lambda device=None: (150 * 10**6, "available memory"))
    assert main(["train", "vae", "--data", "photos", "--steps", "2", "--out", "run", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genlab: error: training this vae on 3x128x128 images needs about")
    assert "--set data.size=" in err and "--set memory_check=false" in err and not Path("run").exists()
    size = err.split("--set data.size=")[1].split()[0]
    assert main(["train", "vae", "--data", "photos", "--steps", "2", "--out", "run", "--quiet",
                 "--set", f"data.size={size}"]) == 0  # the suggestion fits


def test_a_built_model_too_large_and_a_full_disk_are_refused(in_tmp, monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda device=None: (50 * 10**6, "available memory"))
    with pytest.raises(ConfigError, match=r"this ae on 2-dimensional vectors needs about .* of memory \(weights .*, "
                                          r"activations not counted\), and this machine has 50.0 MB"):
        genlab.train("ae", "8gaussians", "run", steps=1, progress=False, hidden=(2000, 2000))
    assert not Path("run").exists()
    monkeypatch.setattr(resources, "available_memory", lambda device=None: (10**12, "available memory"))
    monkeypatch.setattr(resources, "free_disk", lambda path: 500)
    with pytest.raises(ConfigError, match=r"writes checkpoints of about .*, and run has 500 B free; free some space"):
        genlab.train("ae", "8gaussians", "run", steps=1, progress=False)
    with pytest.raises(GenlabError):  # resume checks too
        genlab.resume("missing-run", progress=False)
