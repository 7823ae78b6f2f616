"""Feature extractors for FID-style metrics: shipped classifiers, defaults, user modules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import genlab
from genlab.data import DataSpec
from genlab.data.idx import FILES
from genlab.errors import DataError, GenlabError
from genlab.metrics import features as F
from genlab.metrics.features import (SHIPPED, Classifier, FeatureExtractor, default_extractor, extractor_for,
                                     sha256_file, shipped_extractor, state_dict_sha256)

MIN_ACCURACY = {"digits": 0.97, "mnist": 0.993, "fashion-mnist": 0.91}


def idx_files_available(name: str) -> bool:
    root = os.environ.get("GENLAB_DATA_DIR")
    return bool(root) and all((Path(root) / name / f).is_file() for f in FILES)


def accuracy(ext: FeatureExtractor, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((ext.predict(x) == y).double().mean())


# ---------------------------------------------------------------- shipped weights

@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_files_and_metadata_hash(name):
    path = F.weights_path(name)
    meta_path = path.with_suffix(".json")
    assert path.is_file() and meta_path.is_file(), f"{name}: shipped weights or metadata missing"
    meta = json.loads(meta_path.read_text())
    assert meta["sha256"] == sha256_file(path)
    assert meta["file_bytes"] == path.stat().st_size <= 600_000
    assert meta["test_accuracy"] >= MIN_ACCURACY[name]
    ext = shipped_extractor(name)
    assert ext.weights_sha256 == meta["sha256"] and ext.name == f"genlab-classifier-{name}"
    assert ext.dim == 128 and ext.has_classifier and ext.num_classes == 10
    assert ext.input_shape == SHIPPED[name] and ext.metadata["dataset"] == name
    assert meta["parameters"] == sum(p.numel() for p in ext.module.parameters())


def test_digits_classifier_accuracy(digits):
    ext = extractor_for(digits.spec)
    assert ext.name == "genlab-classifier-digits"
    acc = accuracy(ext, digits.test, digits.test_labels)
    assert acc >= MIN_ACCURACY["digits"]
    assert abs(acc - ext.metadata["test_accuracy"]) <= 0.003  # what the training script measured


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_classifier_accuracy(name):
    if not idx_files_available(name):
        pytest.skip(f"{name} IDX files not found in $GENLAB_DATA_DIR/{name} "
                    f"(set GENLAB_DATA_DIR, e.g. to ../shared/data, to check the shipped {name} classifier)")
    data = genlab.load_dataset(name)
    ext = extractor_for(data.spec)
    assert ext.name == f"genlab-classifier-{name}"
    acc = accuracy(ext, data.test, data.test_labels)
    assert acc >= MIN_ACCURACY[name], f"{name}: test accuracy {acc:.4f}"
    assert abs(acc - ext.metadata["test_accuracy"]) <= 0.001


def test_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(F, "WEIGHTS_DIR", tmp_path)
    F._load_shipped.cache_clear()
    try:
        with pytest.raises(GenlabError, match="no shipped classifier weights for 'mnist'.*missing"):
            shipped_extractor("mnist")
    finally:
        F._load_shipped.cache_clear()
    with pytest.raises(GenlabError, match="did you mean 'mnist'"):
        shipped_extractor("mnsit")


# ---------------------------------------------------------------- eval mode, determinism, inputs

def test_features_deterministic_in_eval_mode(digits):
    ext = shipped_extractor("digits")
    assert isinstance(ext.module, Classifier) and any(isinstance(m, nn.Dropout) for m in ext.module.modules())
    assert ext.module.training is False
    x = digits.test[:100]
    a = ext(x)
    ext.module.train()  # a stray train() must not matter: the extractor enforces eval mode on every call
    with torch.enable_grad():
        b = ext.features(x)
    assert ext.module.training is False
    assert torch.equal(a, b) and a.dtype == torch.float64 and a.device.type == "cpu" and not b.requires_grad
    assert a.shape == (100, 128) and (a >= 0).all()  # after ReLU
    assert torch.equal(ext.logits(x), ext.logits(x))
    p = ext.probs(x)
    assert p.shape == (100, 10) and torch.allclose(p.sum(1), torch.ones(100, dtype=torch.float64))
    # batching and input forms do not change the result
    small = FeatureExtractor(ext.module, "same", input_shape=(1, 8, 8), batch_size=7)
    assert torch.allclose(small(x), a, atol=1e-5)
    assert torch.equal(ext(x.reshape(100, 64).numpy()), a)
    assert ext(x[:0]).shape == (0, 128) and ext.probs(x[:0]).shape == (0, 10)
    with pytest.raises(DataError, match="shape"):
        ext(torch.rand(3, 1, 9, 9))


def test_shipped_only_for_matching_name_and_shape(digits):
    assert extractor_for(digits).name == "genlab-classifier-digits"  # a Dataset works too
    renamed = DataSpec("image", (1, 8, 8), 10, name="mine", source={"name": "/data/mine"})
    assert extractor_for(renamed).name == "identity-64"
    wrong_shape = DataSpec("image", (1, 28, 28), 10, name="digits", source={"name": "digits"})
    assert extractor_for(wrong_shape).name == "random-projection-784to64-seed0"


# ---------------------------------------------------------------- defaults

def test_default_identity_for_2d_toys():
    data = genlab.load_dataset("moons")
    ext = extractor_for(data.spec)
    assert ext.name == "identity-2" and ext.dim == 2 and not ext.has_classifier
    f = ext(data.test)
    assert f.dtype == torch.float64 and torch.equal(f, data.test.double())
    with pytest.raises(GenlabError, match="no classifier"):
        ext.probs(data.test)


def test_default_random_projection_is_fixed():
    spec = DataSpec("vector", (784,), name="vectors")
    a, b = default_extractor(spec), extractor_for(spec)
    assert a.name == b.name == "random-projection-784to64-seed0" and a.dim == 64
    assert a.weights_sha256 == b.weights_sha256
    x = torch.rand(50, 784, generator=torch.Generator().manual_seed(1))
    fa = a(x)
    assert fa.shape == (50, 64) and fa.dtype == torch.float64 and torch.equal(fa, b(x))
    w = a.module.weight
    assert w.shape == (784, 64) and abs(float(w.std()) * 28 - 1) < 0.02  # N(0, 1) / sqrt(784)
    assert torch.allclose(fa, x.double() @ w)
    # image specs of the same size use the same projection on flattened pixels
    img = default_extractor(DataSpec("image", (1, 28, 28), name="imgs"))
    assert img.weights_sha256 == a.weights_sha256 and torch.equal(img(x.reshape(50, 1, 28, 28)), fa)
    assert default_extractor(spec, seed=1).weights_sha256 != a.weights_sha256


# ---------------------------------------------------------------- user modules

class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5))
        self.out = nn.Linear(16, 3)

    def features(self, x):
        return self.body(x)

    def logits(self, x):
        return self.out(self.features(x))


def test_user_module(digits):
    torch.manual_seed(0)
    net = UserNet().train()
    ext = extractor_for(digits.spec, user_module=net)
    assert ext.name == "user:UserNet" and ext.dim == 16 and ext.has_classifier and ext.num_classes == 3
    assert net.training is False
    assert ext.weights_sha256 == state_dict_sha256(net)
    x = digits.test[:20]
    assert torch.equal(ext(x), ext(x)) and ext.probs(x).shape == (20, 3)
    with torch.no_grad():
        net.out.bias.add_(1.0)
    assert state_dict_sha256(net) != ext.weights_sha256

    plain = extractor_for(digits.spec, user_module=nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.Dropout()))
    assert plain.name == "user:Sequential" and plain.dim == 5 and not plain.has_classifier
    assert torch.equal(plain(x), plain(x))
    with pytest.raises(GenlabError, match="nn.Module"):
        FeatureExtractor(lambda x: x, "fn", dim=1)
