"""ddpm's and fm's data-aware defaults (issue 22, "defaults that work"): images of at most 16 x 16
pixels (the digits) get the small two-level UNet without attention and batch 64; larger images and
vectors keep the family's fixed defaults; the user's values win; the run records what was chosen,
and the network is built as recorded."""

from __future__ import annotations

import json

import pytest
import torch

import genlab
from genlab.data.spec import DataSpec
from genlab.models.ddpm import DDPM
from genlab.models.fm import FlowMatching
from genlab.nn.diffusion import SMALL_IMAGE_UNET
from genlab.nn.unet import Attention


@pytest.mark.parametrize("cls", [DDPM, FlowMatching])
def test_small_images_get_the_small_unet_and_others_keep_the_fixed_defaults(cls):
    small = {**SMALL_IMAGE_UNET, **({"timesteps": 250} if cls is DDPM else {})}  # ddpm: T = 250 as well
    assert cls.data_defaults(genlab.load_dataset("digits").spec) == small
    assert cls.data_defaults(DataSpec("image", (3, 16, 16), levels=256)) == small  # the edge
    assert cls.data_defaults(DataSpec("image", (1, 28, 28), levels=256)) == {}  # MNIST-sized
    assert cls.data_defaults(DataSpec("vector", (64,))) == {}  # codes of a latent model, tables


@pytest.mark.parametrize("family", ["ddpm", "fm"])
def test_the_run_records_the_choice_and_builds_that_network_and_given_values_win(family, tmp_path):
    data = genlab.load_dataset("digits")
    run = genlab.train(family, data, out=tmp_path / "small", steps=1, progress=False, seed=0)
    cfg = json.loads((run.path / "config.json").read_text())
    t = {"timesteps": 250} if family == "ddpm" else {}
    assert cfg["data_defaults"]["hparams"] == {"base": 16, "mults": [1, 2], "attention": False, **t}
    assert cfg["data_defaults"]["train"] == {"batch_size": 64} and cfg["train"]["batch_size"] == 64
    if family == "ddpm":
        assert run.model.schedule.T == 250
    unet = run.model.net.net
    first = next(m for m in unet.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == 16
    assert not any(isinstance(m, Attention) for m in unet.modules())
    small = sum(p.numel() for p in run.model.parameters())

    given = genlab.train(family, data, out=tmp_path / "given", steps=1, progress=False, seed=0, base=32,
                         batch_size=128)
    cfg = json.loads((given.path / "config.json").read_text())
    assert cfg["hparams"]["base"] == 32 and cfg["train"]["batch_size"] == 128
    assert cfg["data_defaults"]["hparams"] == {"mults": [1, 2], "attention": False, **t}
    assert sum(p.numel() for p in given.model.parameters()) > 3 * small
