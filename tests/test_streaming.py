"""Data larger than memory: a folder / .npy read on demand by DataLoader workers gives the same
batches, in the same seeded order, and the same losses as the data held in memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import genlab
from genlab.data.lazy import ImageFiles, NpyRows
from genlab.train.loader import stream_batches
from genlab.train.stream import BatchStream


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    ds = genlab.load_dataset("digits")
    for i in range(90):
        d = root / str(int(ds.train_labels[i]) % 3)
        d.mkdir(exist_ok=True)
        Image.fromarray((ds.train[i, 0].numpy() * 255).round().astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


def test_streamed_folder_gives_the_in_memory_batches_and_losses(folder):
    mem, lazy = genlab.load_dataset(folder), genlab.load_dataset(folder, stream=True)
    assert isinstance(lazy.train, ImageFiles) and isinstance(mem.train, torch.Tensor)
    # the same batches from worker processes, also from a stream resumed mid-epoch and on rank 1 of 2
    for rank, world, skip in ((0, 1, 0), (0, 1, 7), (1, 2, 3)):
        stream = BatchStream(len(mem.train), 8, seed=3, rank=rank, world=world)
        for _ in range(skip):
            stream.next()
        batches = stream_batches(lazy.train, lazy.train_labels, stream, workers=2)
        for _ in range(12):  # more than an epoch: the order moves on to the next permutation
            idx = stream.next()
            got, x, y = next(batches)
            assert torch.equal(got, idx) and torch.equal(x, mem.train[idx]) and torch.equal(y, mem.train_labels[idx])
        del batches  # stops its workers
    kw = dict(steps=6, batch_size=16, log_every=1, save=False, progress=False)
    a = genlab.train("vae", folder, stream=False, **kw)
    b = genlab.train("vae", folder, stream=True, workers=1, **kw)
    import multiprocessing

    assert not multiprocessing.active_children()  # the workers stopped with training
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_memory_mapped_npy_streams_and_matches(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 5)) * [1, 2, 3, 4, 5] + 7).astype(np.float32)
    path = tmp_path / "big.npy"
    np.save(path, x)
    mem, lazy = genlab.load_dataset(path), genlab.load_dataset(path, stream=True)
    assert isinstance(lazy.train, NpyRows) and torch.equal(lazy.train[:], mem.train)
    kw = dict(steps=5, batch_size=32, log_every=1, save=False, progress=False)
    a, b = genlab.train("realnvp", path, **kw), genlab.train("realnvp", path, stream=True, workers=0, **kw)
    # the standardisation computed in one streamed pass agrees with the in-memory one
    assert torch.allclose(a.model.data_shift, b.model.data_shift, atol=1e-5)
    assert torch.allclose(a.model.data_scale, b.model.data_scale, rtol=1e-5)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-5)


def test_large_data_streams_by_itself(tmp_path, monkeypatch):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((50, 4), np.float32) + np.arange(4, dtype=np.float32))
    monkeypatch.setenv("GENLAB_STREAM_BYTES", "400")  # 50 x 4 float32 = 800 bytes: above it
    assert isinstance(genlab.load_dataset(path).train, NpyRows)
    monkeypatch.setenv("GENLAB_STREAM_BYTES", "100000")
    assert isinstance(genlab.load_dataset(path).train, torch.Tensor)


def test_streamed_run_from_the_cli_resumes_where_it_stopped(folder, tmp_path):
    """`--stream` records itself; a resumed streamed run restarts its loader at the checkpoint's
    position in the order and ends with the weights of an uninterrupted run."""
    from genlab.cli import main

    args = ["--data", str(folder), "--set", "batch_size=16", "--set", "workers=1", "--quiet"]
    assert main(["train", "vae", "--steps", "3", "--out", str(tmp_path / "a"), "--stream", *args]) == 0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["train"]["stream"] is True and cfg["data"]["source"]["options"]["stream"] is True  # resume streams
    assert main(["resume", str(tmp_path / "a"), "--steps", "4", "--quiet"]) == 0
    assert main(["train", "vae", "--steps", "7", "--out", str(tmp_path / "b"), "--stream", *args]) == 0
    a, b = genlab.load(tmp_path / "a"), genlab.load(tmp_path / "b")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_stream_position_survives_a_change_of_world_size():
    """A checkpoint of 1 process at batch 8 after 4 batches (32 examples), resumed by 2 processes at
    batch 8 (global batch 16): they continue with examples 32..47 of the same order."""
    one = BatchStream(100, 8, seed=5)
    used = torch.cat([one.next() for _ in range(4)])
    state, order = one.state_dict(), torch.cat([used, one.next(), one.next()])
    halves = []
    for rank in (0, 1):
        s = BatchStream(100, 8, seed=5, rank=rank, world=2)
        s.load_state_dict(state)
        halves.append(s.next())
    assert torch.equal(torch.cat(halves), order[32:48])
