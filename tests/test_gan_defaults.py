"""The GAN's data-aware defaults (issue 22, "defaults that work"): low-dimensional vectors get a 2-D-sized
code, minibatch std, a deeper narrower MLP and a larger learning rate; small images the larger learning
rate; larger images and wide vectors keep the family's fixed defaults; a value the user gives wins, trainer settings included."""

from __future__ import annotations

import json

import torch

import genlab
from genlab.data.spec import DataSpec, Dataset
from genlab.models.gan import GAN


def _vectors(dim: int, n: int = 64) -> Dataset:
    g = torch.Generator().manual_seed(0)
    spec = DataSpec("vector", (dim,), name=f"v{dim}")
    return Dataset(torch.randn(n, dim, generator=g), torch.randn(16, dim, generator=g), spec)


def test_low_dim_vectors_get_the_toy_defaults_and_images_and_wide_vectors_do_not():
    ring = genlab.load_dataset("8gaussians", n_train=200, n_test=100).spec
    assert GAN.data_defaults(ring) == {"latent_dim": 2, "minibatch_std": True, "hidden": (128, 128, 128),
                                       "lr": 1e-3, "batch_size": 128, "sampling": "auto"}
    assert GAN.data_defaults(_vectors(16).spec)["latent_dim"] == 16  # the edge of "low-dimensional"
    assert GAN.data_defaults(_vectors(17).spec) == {}
    # small images (the 8 x 8 digits) take only the larger learning rate; MNIST-sized ones keep DCGAN's
    assert GAN.data_defaults(genlab.load_dataset("digits").spec) == {"lr": 1e-3}
    assert GAN.data_defaults(DataSpec("image", (1, 28, 28), levels=256)) == {}


def test_trainer_settings_from_the_data_reach_the_optimizer_and_the_record(tmp_path):
    data = _vectors(2, 200)
    run = genlab.train("gan", data, out=tmp_path / "toy", steps=2, progress=False, seed=0)
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["train"]["lr"] == 1e-3 and run.history[-1]["lr"] == 1e-3  # not train_defaults' 2e-4
    assert cfg["hparams"]["hidden"] == [128, 128, 128] and cfg["hparams"]["latent_dim"] == 2
    assert cfg["data_defaults"]["train"] == {"lr": 1e-3, "batch_size": 128} and cfg["train"]["batch_size"] == 128
    assert cfg["data_defaults"]["hparams"] == {"latent_dim": 2, "minibatch_std": True, "hidden": [128, 128, 128],
                                               "sampling": "auto"}
    # the networks are built as recorded: three hidden layers of 128 in G, and D judges 2-D points
    widths = [m.out_features for m in run.model.generator.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 128, 128, 2]

    # the user's values win, trainer settings as well as hyperparameters, and are not recorded as derived
    run = genlab.train("gan", data, out=tmp_path / "mine", steps=2, progress=False, seed=0, lr=3e-4,
                       hidden=[32, 32])
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["train"]["lr"] == 3e-4 and run.history[-1]["lr"] == 3e-4 and cfg["hparams"]["hidden"] == [32, 32]
    assert "lr" not in cfg["data_defaults"]["train"] and "hidden" not in cfg["data_defaults"]["hparams"]


def test_small_images_train_at_the_larger_rate_and_larger_images_keep_dcgans(tmp_path):
    run = genlab.train("gan", "digits", out=tmp_path / "d", steps=1, progress=False)
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["train"]["lr"] == 1e-3 and run.history[-1]["lr"] == 1e-3
    assert cfg["data_defaults"]["train"] == {"lr": 1e-3} and cfg["data_defaults"]["hparams"] == {}
    g = torch.Generator().manual_seed(0)
    spec = DataSpec("image", (1, 28, 28), name="i28", levels=256)
    big = Dataset(torch.rand(64, 1, 28, 28, generator=g), torch.rand(16, 1, 28, 28, generator=g), spec)
    run = genlab.train("gan", big, out=tmp_path / "m", steps=1, progress=False)
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["train"]["lr"] == 2e-4 and "data_defaults" not in cfg
