"""Speed options keep the arithmetic: channels_last (NHWC) trains the same run, saves and resumes."""

from __future__ import annotations

import pytest
import torch

import genlab


def test_channels_last_trains_the_same_run_and_resumes_exactly(tmp_path):
    kw = dict(net="conv", steps=6, batch_size=32, log_every=1, progress=False, checkpoint_every=3)
    plain = genlab.train("vae", "digits", save=False, **kw)
    nhwc = genlab.train("vae", "digits", out=tmp_path / "a", channels_last=True, **kw)
    assert next(p for p in nhwc.model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    # the same losses up to the convolution algorithm's summation order
    assert [h["loss"] for h in nhwc.history] == pytest.approx([h["loss"] for h in plain.history], rel=1e-5)
    half = genlab.train("vae", "digits", out=tmp_path / "b", channels_last=True, **{**kw, "steps": 3})
    assert half.history[-1]["step"] == 3
    resumed = genlab.resume(tmp_path / "b", steps=3, progress=False)
    a, b = genlab.load(tmp_path / "a"), genlab.load(tmp_path / "b")
    assert resumed.history[-1]["step"] == 6
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
