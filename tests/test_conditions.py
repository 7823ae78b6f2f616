"""Conditions as a typed part of the data: none, class labels, or a tensor per example (paired data)."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import genlab
from genlab.cli import main
from genlab.data.spec import DataSpec, Dataset
from genlab.errors import ConfigError, DataError
from genlab.models.base import MODELS, GenerativeModel, create_model


class PairChecker(GenerativeModel):
    """A test family conditioned on a tensor: its loss measures whether each y it is given is the
    2x area-downsampled version of its x (the digits-sr pairing), and it samples by nearest
    upsampling of the condition, so what evaluation and the CLI feed it can be read off its samples."""

    kinds = ("image",)
    condition_kinds = ("tensor",)

    def __init__(self, spec, conditional: bool = True):
        super().__init__(spec)
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, x, y=None):
        y = self.condition(y, len(x))
        pair_error = (F.avg_pool2d(x, 2) - y).abs().max()
        return {"loss": (self.w - 1) ** 2, "pair_error": pair_error.detach()}

    @torch.no_grad()
    def sample(self, n, y=None, generator=None):
        return F.interpolate(self.condition(y, n, sample=True), scale_factor=2, mode="nearest")


@pytest.fixture
def pair_family():
    MODELS["pair-checker"] = PairChecker
    PairChecker.family = "pair-checker"
    yield "pair-checker"
    MODELS.pop("pair-checker")


def _paired_npz(path, n=30, labels=True):
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 8, 8)).astype(np.float32)
    c = F.avg_pool2d(torch.from_numpy(x), 2).numpy()
    extra = {"y": np.arange(n) % 3} if labels else {}
    np.savez(path, x=x, c=c, **extra)
    return x, c


# -- data -----------------------------------------------------------------------------------------
def test_paired_npz_keeps_each_condition_with_its_example(tmp_path):
    x, c = _paired_npz(tmp_path / "p.npz")
    ds = genlab.load_dataset(tmp_path / "p.npz")
    assert ds.spec.condition_kind == "tensor" and ds.spec.condition_shape == (1, 4, 4)
    assert ds.spec.condition_type == "image" and ds.spec.num_classes == 3
    assert len(ds.train) + len(ds.test) == 30
    for split in ("train", "test"):
        xs, cs = (ds.train, ds.train_cond) if split == "train" else (ds.test, ds.test_cond)
        assert torch.equal(F.avg_pool2d(xs, 2), cs)  # the split moved x and c together
        assert ds.conditions(split, "tensor") is cs
        assert torch.equal(ds.conditions(split, "class"), ds.train_labels if split == "train" else ds.test_labels)


def test_paired_npz_with_its_own_split(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "s.npz", train=rng.random((10, 5)), test=rng.random((4, 5)),
             train_c=rng.random((10, 2)), test_c=rng.random((4, 2)))
    ds = genlab.load_dataset(tmp_path / "s.npz")
    assert ds.spec.kind == "vector" and ds.spec.condition_shape == (2,) and ds.spec.condition_type == "vector"
    assert len(ds.train) == 10 and len(ds.test_cond) == 4
    np.savez(tmp_path / "bad.npz", train=rng.random((10, 5)), test=rng.random((4, 5)), train_c=rng.random((10, 2)))
    with pytest.raises(DataError, match="missing test_c"):
        genlab.load_dataset(tmp_path / "bad.npz")
    np.savez(tmp_path / "count.npz", x=rng.random((10, 5)), c=rng.random((9, 2)))
    with pytest.raises(DataError, match="9 conditions for 10 examples"):
        genlab.load_dataset(tmp_path / "count.npz")


def test_paired_folders_match_by_name_and_refuse_strays(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    targets = {}
    for i in range(8):
        b = (rng.random((8, 8)) * 255).astype(np.uint8)
        targets[f"im{i}"] = b
        Image.fromarray(b).save(tmp_path / "B" / f"im{i}.png")
        Image.fromarray(255 - b[::2, ::2]).save(tmp_path / "A" / f"im{i}.png")  # input: inverted, subsampled
    ds = genlab.load_dataset(tmp_path, test_fraction=0.25)
    assert ds.spec.shape == (1, 8, 8) and ds.spec.condition_shape == (1, 4, 4)
    for xs, cs in ((ds.train, ds.train_cond), (ds.test, ds.test_cond)):
        assert torch.allclose(cs, 1 - xs[:, :, ::2, ::2], atol=1e-6)  # each input sits with its own target
    Image.fromarray(targets["im0"]).save(tmp_path / "A" / "stray.png")
    with pytest.raises(DataError, match=r"same names: 1 only in A/ \(e\.g\. stray\.png\)"):
        genlab.load_dataset(tmp_path)


def test_unconditioned_specs_and_old_run_files_are_unchanged():
    ds = genlab.load_dataset("digits")
    d = ds.spec.to_dict()
    assert "condition_shape" not in d and "condition_type" not in d  # config.json of such runs as before
    old = {k: v for k, v in d.items()}
    assert DataSpec.from_dict(old).condition_kind == "class"
    sr = genlab.load_dataset("digits-sr")
    back = DataSpec.from_dict(json.loads(json.dumps(sr.spec.to_dict())))
    assert back.condition_shape == (1, 4, 4) and back == sr.spec


def test_conditions_are_validated():
    spec = DataSpec("vector", (3,), condition_shape=(2,), condition_type="vector")
    x = torch.zeros(5, 3)
    with pytest.raises(DataError, match="4 train conditions for 5 examples"):
        Dataset(x, x, spec, train_cond=torch.zeros(4, 2), test_cond=torch.zeros(5, 2))
    with pytest.raises(DataError, match="spec says"):
        Dataset(x, x, spec, train_cond=torch.zeros(5, 3), test_cond=torch.zeros(5, 2))
    with pytest.raises(DataError, match="declares none"):
        Dataset(x, x, DataSpec("vector", (3,)), train_cond=torch.zeros(5, 2), test_cond=torch.zeros(5, 2))


# -- the one condition helper ------------------------------------------------------------------------
def test_condition_helper_for_each_kind(pair_family):
    digits = genlab.load_dataset("digits")
    plain = create_model("vae", digits)
    assert plain.condition_kind == "none" and plain.condition(torch.zeros(3), 3) is None
    with pytest.raises(ConfigError, match="without conditional=true"):
        plain.condition(2, 3, sample=True)
    cls = create_model("vae", digits, conditional=True)
    assert cls.condition_kind == "class"
    assert cls.condition(None, 12, sample=True).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert cls.condition(None, 4) is None and cls.condition(7, 3).tolist() == [7, 7, 7]
    with pytest.raises(ConfigError, match="0..9"):
        cls.condition(10, 2)
    sr = genlab.load_dataset("digits-sr")
    t = create_model(pair_family, sr)
    assert t.condition_kind == "tensor"
    one = torch.rand(1, 4, 4)
    assert torch.equal(t.condition(one, 3), one.expand(3, 1, 4, 4))
    with pytest.raises(ConfigError, match=r"takes \(1, 4, 4\)"):
        t.condition(torch.rand(3, 1, 8, 8), 3)
    with pytest.raises(ConfigError, match="--condition FILE"):
        t.condition(None, 3, sample=True)


def test_family_without_tensor_conditions_refuses_paired_data_by_name():
    with pytest.raises(ConfigError, match="cannot be conditioned on the image inputs of 'digits-sr'"):
        create_model("vae", genlab.load_dataset("digits-sr"), conditional=True)


# -- streamed with x, used by evaluation and the CLI --------------------------------------------------
def test_trainer_streams_each_example_with_its_condition(pair_family):
    run = genlab.train(pair_family, "digits-sr", save=False, steps=30, seed=3, progress=False, batch_size=64,
                       log_every=1)
    assert len(run.history) == 30
    assert max(h["pair_error"] for h in run.history) < 1e-6


def test_evaluation_samples_with_the_reference_conditions(pair_family):
    from genlab.metrics.evaluate import evaluate

    ds = genlab.load_dataset("digits-sr")
    model = create_model(pair_family, ds).eval()
    res = evaluate(model, ds, ["fid", "balance"], n=200, seed=0)
    # the samples are the nearest-upsampled test inputs, so the classifier sees each test digit's
    # blocky version, with the test label as the truth: far above chance (0.1); were the
    # conditions not those of the reference examples, the labels would not match
    assert res["metrics"]["class_accuracy"] > 0.35
    assert "conditions" in res["protocol"]["labels"]


def test_cli_sample_with_a_condition_file(pair_family, in_tmp, capsys):
    from PIL import Image

    assert main(["train", pair_family, "--data", "digits-sr", "--steps", "3", "--out", "r", "--quiet"]) == 0
    c = np.random.default_rng(0).random((5, 1, 4, 4)).astype(np.float32)
    np.save("c.npy", c)
    assert main(["sample", "r", "--condition", "c.npy", "--out", "s.npy"]) == 0
    s = np.load("s.npy")
    assert s.shape == (5, 1, 8, 8) and np.allclose(s[:, :, ::2, ::2], c)
    Image.fromarray((c[0, 0] * 255).astype(np.uint8)).save("one.png")
    assert main(["sample", "r", "--condition", "one.png", "-n", "3", "--out", "t.npy"]) == 0
    assert np.load("t.npy").shape == (3, 1, 8, 8)
    capsys.readouterr()
    for args, message in ((["--condition", "c.npy", "-n", "4"], "holds 5 conditions"),
                          (["--condition", "missing.npy"], "no such condition file"),
                          (["--label", "3", "--condition", "c.npy"], "not both"),
                          ([], "pass one")):
        assert main(["sample", "r", "--out", "u.npy", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    np.save("wrong.npy", np.zeros((2, 1, 8, 8), np.float32))
    assert main(["sample", "r", "--condition", "wrong.npy", "--out", "u.npy"]) == 2
    assert "this model takes (1, 4, 4)" in capsys.readouterr().err


def test_cli_condition_on_a_class_conditional_run_says_use_label(in_tmp, capsys):
    assert main(["train", "vae", "--steps", "2", "--out", "v", "--quiet", "--set", "conditional=true"]) == 0
    np.save("c.npy", np.zeros((1, 4, 4), np.float32))
    capsys.readouterr()
    assert main(["sample", "v", "--condition", "c.npy"]) == 2
    assert "use --label" in capsys.readouterr().err
