"""Run directories written by genlab 0.1 before the one-contract refactor still load and sample the same.

tests/data/runs-0.1/ holds tiny runs (config.json + model.safetensors) of every family, made by
the code at commit d002898 with tests/data/runs-0.1/make.py: digits, 2 steps, seed 0,
conditional where the family was; fingerprints.json holds the sum of 6 samples drawn with
torch.Generator().manual_seed(0) (ddpm/fm with 3 sampler steps; labels 0..5 where conditional).
"""

import json
from pathlib import Path

import pytest
import torch

import genlab

OLD = Path(__file__).parent / "data" / "runs-0.1"
FINGERPRINTS = json.loads((OLD / "fingerprints.json").read_text())


@pytest.mark.parametrize("family", sorted(FINGERPRINTS))
def test_old_run_loads_and_samples_as_it_did(family):
    model = genlab.load(OLD / family)
    assert model.family == family
    cfg = json.loads((OLD / family / "config.json").read_text())
    kw = {"y": torch.arange(6) % 10} if cfg["hparams"].get("conditional") else {}
    opts = {"steps": 3} if family in ("ddpm", "fm") else {}
    s = model.sample(6, generator=torch.Generator().manual_seed(0), **kw, **opts)
    assert s.double().sum().item() == pytest.approx(FINGERPRINTS[family], rel=1e-5, abs=1e-5)


def test_old_checkpoint_resumes_to_the_weights_the_old_code_reached(tmp_path):
    """A ddpm run of the old code (tests/data/runs-0.1-unfinished/ddpm: 4 steps, checkpoint at 4,
    its network's weights under the old key names `net.*`) resumed for 2 more steps ends with the
    weights the old code's own resume reached (sum 100.57128498014808, measured at d002898)."""
    import shutil

    run = tmp_path / "ddpm"
    shutil.copytree(OLD.parent / "runs-0.1-unfinished" / "ddpm", run)
    torch.set_num_threads(1)
    r = genlab.resume(run, steps=2, progress=False)
    total = sum(float(v.double().sum()) for k, v in r.model.state_dict().items()
                if v.is_floating_point() and k != "x0_mse")  # x0_mse: measured after training, new since
    # 1.7e-9 apart on an Intel AVX512 host (2026-12-03): float32 kernels round differently per CPU
    assert total == pytest.approx(100.57128498014808, rel=1e-7)
