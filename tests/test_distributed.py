"""torchrun data parallelism on CPU (gloo): two processes with batch B equal one process with batch 2B."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import genlab

SCRIPT = textwrap.dedent("""
    import sys, genlab
    genlab.train("ae", "digits", out=sys.argv[1], steps=15, batch_size=32, progress=False, checkpoint_every=5)
""")


def test_two_process_ddp_matches_single_process_with_double_batch(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([*torchrun, str(script), str(tmp_path / "ddp")], capture_output=True, text=True,
                       env=env, timeout=300)
    if r.returncode != 0 and "gloo" in r.stderr.lower() and "not available" in r.stderr.lower():
        pytest.skip("torch was built without gloo")
    assert r.returncode == 0, r.stderr[-2000:]
    # tolerance: a tenth of one Adam step (lr 1e-3); a wrong batch split differs by whole steps
    ddp = genlab.load(tmp_path / "ddp")
    single = genlab.train("ae", "digits", steps=15, batch_size=64, save=False, progress=False).model
    for k, v in single.state_dict().items():
        assert torch.allclose(v, ddp.state_dict()[k], atol=1e-4), (k, (v - ddp.state_dict()[k]).abs().max())
