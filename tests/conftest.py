import os

import pytest
import torch

torch.set_num_threads(1)  # tests run in parallel workers; one thread each keeps them deterministic and fast


def crash_after(at: int):
    """A training callback that kills the run after step `at` like a dying process would: a
    KeyboardInterrupt not from a signal, so no checkpoint is written on the way out."""
    from genlab.train import Callback

    class Crash(Callback):
        def on_step_end(self, trainer):
            if trainer.step == at:
                raise KeyboardInterrupt

    return Crash()


@pytest.fixture(scope="session")
def digits():
    import genlab

    return genlab.load_dataset("digits")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def data_dir_available(name: str) -> bool:
    root = os.environ.get("GENLAB_DATA_DIR")
    return bool(root) and os.path.isdir(os.path.join(root, name))
