"""PixelCNN: causality of every masked layer (by autograd), an exactly normalised likelihood,
learning on digits, raster sampling, class conditioning, and the run files."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

import genlab
from genlab.cli import main
from genlab.data.spec import DataSpec
from genlab.errors import ConfigError
from genlab.metrics.features import shipped_extractor
from genlab.nn.pixelcnn import GatedBlock, GatedPixelCNN, MaskedConv2d


# -- causality, by autograd ------------------------------------------------------------------------
def dependence(f, shape, r, c):
    """Which input pixels the outputs of f at pixel (r, c) depend on: a bool [H, W] map, nonzero
    gradient of sum(f(x)[..., r, c]) w.r.t. a random input x of `shape` = (C, H, W)."""
    x = torch.randn(1, *shape, dtype=torch.float64, requires_grad=True)
    f(x)[..., r, c].sum().backward()
    return x.grad[0].abs().sum(0) > 0


def before(H, W, r, c, strict=True):
    """The pixels before (r, c) in raster order (and (r, c) itself unless strict)."""
    i = torch.arange(H * W).reshape(H, W)
    return i < r * W + c if strict else i <= r * W + c


def window(H, W, r, c, up, down, left, right):
    rows, cols = torch.arange(H)[:, None], torch.arange(W)[None]
    return (rows >= r - up) & (rows <= r + down) & (cols >= c - left) & (cols <= c + right)


H, W = 6, 7
PIXELS = list(itertools.product(range(H), range(W)))


def test_masked_convolutions_type_a_and_b_see_exactly_the_past_of_their_window():
    torch.manual_seed(0)
    a = MaskedConv2d(2, 3, 5, "A").double()
    b = MaskedConv2d(2, 3, 5, "B").double()
    for r, c in PIXELS:
        win = window(H, W, r, c, 2, 2, 2, 2)
        assert torch.equal(dependence(a, (2, H, W), r, c), win & before(H, W, r, c))  # centre excluded
        assert torch.equal(dependence(b, (2, H, W), r, c), win & before(H, W, r, c, strict=False))
    stack = torch.nn.Sequential(MaskedConv2d(2, 8, 3, "A"), torch.nn.Tanh(), MaskedConv2d(8, 8, 3, "B"),
                                torch.nn.Tanh(), MaskedConv2d(8, 3, 3, "B")).double()
    for r, c in PIXELS:
        dep = dependence(stack, (2, H, W), r, c)
        assert not (dep & ~before(H, W, r, c)).any()  # nothing at or after i
        if r > 0 and c + 1 < W:
            assert dep[r - 1, c + 1] and (c == 0 or dep[r, c - 1])
    # the blind spot of the original PixelCNN: a stack of raster masks never sees (r-1, c+2)
    assert not dependence(stack, (2, H, W), 3, 2)[2, 4]


def test_gated_block_vertical_and_horizontal_stacks_are_causal():
    torch.manual_seed(0)
    first = GatedBlock(2, 4, 5, "A", cond_dim=3).double()
    second = GatedBlock(4, 4, 3, "B", cond_dim=3).double()
    cond = torch.randn(1, 3, dtype=torch.float64)
    assert second.residual and not first.residual
    v1 = lambda x: first(x, x, cond)[0]  # noqa: E731
    h1 = lambda x: first(x, x, cond)[1]  # noqa: E731
    v2 = lambda x: second(*first(x, x, cond), cond)[0]  # noqa: E731
    h2 = lambda x: second(*first(x, x, cond), cond)[1]  # noqa: E731
    for r, c in PIXELS:
        rows_above = torch.arange(H)[:, None].expand(H, W) < r
        # type A: the vertical stack sees the k x k window's rows above; the horizontal stack
        # the pixels to the left in the row plus, through the link, the vertical stack's view
        assert torch.equal(dependence(v1, (2, H, W), r, c), window(H, W, r, c, 2, 0, 2, 2) & rows_above)
        assert torch.equal(dependence(h1, (2, H, W), r, c),
                           (window(H, W, r, c, 2, 0, 2, 2) & rows_above) | (window(H, W, r, c, 0, 0, 2, 0)
                                                                            & before(H, W, r, c)))
        # type B on top: the windows grow, causality holds
        assert torch.equal(dependence(v2, (2, H, W), r, c), window(H, W, r, c, 3, 0, 3, 3) & rows_above)
        dep = dependence(h2, (2, H, W), r, c)
        assert not (dep & ~before(H, W, r, c)).any()
        assert torch.equal(dep[r], before(H, W, r, c)[r] & window(H, W, r, c, 0, 0, 3, 0)[r])
    # the class-conditional bias reaches both stacks
    cond.requires_grad_(True)
    v, h = first(*(2 * [torch.randn(1, 2, H, W, dtype=torch.float64)]), cond)
    assert torch.autograd.grad(v[..., 2, 3].sum(), cond, retain_graph=True)[0].abs().sum() > 0
    assert torch.autograd.grad(h[..., 2, 3].sum(), cond)[0].abs().sum() > 0


def test_whole_network_sees_every_earlier_pixel_and_nothing_else():
    """No blind spot: with a receptive field covering the image, the logits at pixel i depend on
    every pixel j < i, including the up-right ones a stack of raster masks misses."""
    torch.manual_seed(0)
    h, w = 6, 6
    net = GatedPixelCNN(2, 3, channels=16, n_layers=5, kernel_size=3, first_kernel=3, cond_dim=2).double()
    cond = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    for r, c in itertools.product(range(h), range(w)):
        dep = dependence(lambda x: net(x, cond), (2, h, w), r, c)
        assert torch.equal(dep, before(h, w, r, c)), (r, c)


# -- an exactly normalised likelihood --------------------------------------------------------------
def all_images(shape, levels):
    n = math.prod(shape)
    grid = torch.tensor(list(itertools.product(range(levels), repeat=n)), dtype=torch.float32)
    return grid.reshape(-1, *shape) / (levels - 1)


@pytest.mark.parametrize("shape, levels, hp", [
    ((1, 2, 2), 2, {}),                       # binary data: Bernoulli output
    ((1, 2, 2), 17, {"binarize": True}),      # grayscale data binarised: Bernoulli output
    ((1, 2, 2), 3, {}),                       # categorical over 3 levels: 81 images
    ((2, 1, 2), 3, {}),                       # two channels per pixel: 81 images
    ((1, 2, 2), 17, {"levels": 3}),           # coarser levels than the data's
    ((2, 1, 2), 3, {"output": "logistic_mix", "n_mix": 2}),  # PixelCNN++'s discretised logistics
])
def test_log_prob_sums_to_one_over_every_image(shape, levels, hp):
    torch.manual_seed(0)
    spec = DataSpec("image", shape, num_classes=3, name="toy", levels=levels)
    model = genlab.create_model("pixelcnn", spec, channels=8, n_layers=2, first_kernel=3, **hp).eval()
    L = model.levels
    assert model.output == hp.get("output", "bernoulli" if L == 2 else "categorical")
    x = all_images(shape, L)
    assert len(x) == L ** math.prod(shape)
    total = model.log_prob(x).double().exp().sum()
    assert abs(float(total) - 1) < 1e-5
    # conditional: normalised for every class and for the marginal over classes
    cond = genlab.create_model("pixelcnn", spec, channels=8, n_layers=2, first_kernel=3, conditional=True, **hp)
    cond.eval()
    for y in range(3):
        assert abs(float(cond.log_prob(x, torch.full((len(x),), y)).double().exp().sum()) - 1) < 1e-5
    per_class = torch.stack([cond.log_prob(x, torch.full((len(x),), y)) for y in range(3)])
    marginal = cond.log_prob(x)
    assert torch.allclose(marginal, per_class.logsumexp(0) - math.log(3), atol=1e-5)
    assert abs(float(marginal.double().exp().sum()) - 1) < 1e-5
    assert torch.allclose(cond.anomaly_score(x), -marginal)


# -- learning ----------------------------------------------------------------------------------------
def independent_categorical_nll(train, test, levels):
    """Test NLL (nats) of the per-pixel independent categorical, fitted on train (add-one smoothing)."""
    k, kt = (train * (levels - 1)).round().long(), (test * (levels - 1)).round().long()
    counts = torch.stack([(k == v).sum(0) for v in range(levels)]).double() + 1
    log_p = (counts / counts.sum(0)).log()  # [L, C, H, W]
    return float(-log_p.unsqueeze(0).expand(len(kt), *log_p.shape).gather(1, kt.unsqueeze(1)).flatten(1).sum(1).mean())


def test_learns_digits_beyond_uniform_and_independent_pixels(digits):
    spec = digits.spec
    uniform = spec.dim * math.log(spec.levels)  # 181.3 nats
    independent = independent_categorical_nll(digits.train, digits.test, spec.levels)  # ~108 nats
    run = genlab.train("pixelcnn", digits, steps=300, seed=0, save=False, progress=False, batch_size=32, lr=2e-3,
                       channels=16, n_layers=2, first_kernel=5)
    model = run.model.eval()
    nll = float(-model.log_prob(digits.test).mean())
    print(f"\npixelcnn on digits: test NLL {nll:.2f} nats ({nll / (spec.dim * math.log(2)):.3f} bits/dim); "
          f"independent pixels {independent:.2f} ({independent / (spec.dim * math.log(2)):.3f}); uniform {uniform:.2f}")
    assert nll < 0.6 * uniform
    assert nll < independent - 8
    assert run.history[-1]["loss"] < run.history[0]["loss"] and "bpd" in run.history[-1]


# -- sampling --------------------------------------------------------------------------------------
def test_sample_is_one_raster_pass_on_the_level_grid_and_reproducible(digits):
    torch.manual_seed(0)
    model = genlab.create_model("pixelcnn", digits, channels=8, n_layers=1, first_kernel=3).eval()
    batches = []
    hook = model.net.register_forward_hook(lambda mod, inp, out: batches.append(len(inp[0])))
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    x = model.sample(16, generator=g(1))
    hook.remove()
    assert batches == [16] * digits.spec.dim  # one network pass per pixel for the whole batch
    assert x.shape == (16, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    k = x * (model.levels - 1)
    assert torch.equal(k, k.round())
    assert torch.equal(model.sample(16, generator=g(1)), x)
    assert not torch.equal(model.sample(16, generator=g(2)), x)
    cold = model.sample(16, generator=g(1), temperature=1e-4)  # the most likely level given the past
    assert torch.equal(cold, model.sample(16, generator=g(3), temperature=1e-4))
    with pytest.raises(ConfigError, match="temperature"):
        model.sample(2, temperature=0)
    binary = genlab.create_model("pixelcnn", digits, channels=8, n_layers=1, first_kernel=3, binarize=True).eval()
    xb = binary.sample(4, generator=g(0))
    assert set(xb.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("hp", [{"levels": 3}, {"levels": 2}, {"levels": 4, "output": "logistic_mix", "n_mix": 3}])
def test_samples_follow_the_likelihood(hp):
    """The sampler draws from the distribution log_prob scores: empirical frequencies of all
    images of a 1 x 2 toy against exp(log_prob), for every output."""
    torch.manual_seed(0)
    spec = DataSpec("image", (1, 1, 2), name="toy", levels=hp["levels"])
    model = genlab.create_model("pixelcnn", spec, channels=8, n_layers=1, first_kernel=3, **hp).eval()
    head = model.net.head[-1]  # a lopsided distribution, not near-uniform
    with torch.no_grad():
        head.bias.copy_(torch.linspace(-2, 1, len(head.bias)))
        head.weight.normal_(std=1.0)
    x = all_images((1, 1, 2), model.levels)
    p = model.log_prob(x).exp()
    assert p.max() > 1.5 * p.min()
    n = 40_000
    s = model.sample(n, generator=torch.Generator().manual_seed(0))
    idx = (s.flatten(1) * (model.levels - 1)).round().long() @ torch.tensor([model.levels, 1])
    freq = torch.bincount(idx, minlength=len(x)).double() / n
    assert (freq - p).abs().max() < 4 * (0.25 / n) ** 0.5 + 1e-3, (freq, p)


def test_binarize_resamples_every_batch(digits):
    torch.manual_seed(0)
    model = genlab.create_model("pixelcnn", digits, channels=8, n_layers=1, first_kernel=3, binarize=True)
    x = digits.train[:32]
    a, b = model.loss(x)["loss"], model.loss(x)["loss"]
    assert a != b  # x ~ Bernoulli(x) drawn anew
    xb = torch.bernoulli(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model.loss(xb)["loss"], -model.log_prob(xb).mean(), atol=1e-4)


def test_class_conditional_samples_are_recognised(digits):
    run = genlab.train("pixelcnn", digits, steps=300, seed=0, save=False, progress=False, batch_size=32, lr=2e-3,
                       channels=16, n_layers=2, first_kernel=5, conditional=True)
    model = run.model.eval()
    y = torch.arange(100) % 10
    x = model.sample(100, y, generator=torch.Generator().manual_seed(0))
    acc = float((shipped_extractor("digits").predict(x) == y).double().mean())
    assert acc > 0.3, acc  # chance: 0.1
    xt, yt = digits.test[:200], digits.test_labels[:200]
    assert (model.log_prob(xt, yt) > model.log_prob(xt, (yt + 1) % 10)).double().mean() > 0.9
    with pytest.raises(ConfigError, match="conditional"):
        model.loss(xt)


# -- run files, CLI, errors -----------------------------------------------------------------------
def test_train_save_load_and_cli_eval(digits, tmp_path, capsys):
    hp = {"channels": 8, "n_layers": 1, "first_kernel": 3}
    run = genlab.train("pixelcnn", digits, steps=3, out=tmp_path / "run", progress=False, **hp)
    loaded = genlab.load(tmp_path / "run")
    x = digits.test[:8]
    assert torch.equal(loaded.log_prob(x), run.model.log_prob(x))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(loaded.sample(4, generator=g()), run.model.sample(4, generator=g()))
    assert {"log_prob", "anomaly_score"} <= set(loaded.capabilities())
    assert loaded.likelihood_kind == "exact" and loaded.discrete_likelihood and loaded.likelihood_support == "discrete"
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--n", "100", "--metrics", "nll", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    nll = float(-loaded.log_prob(digits.test).mean())
    assert out["metrics"]["nll"] > 0 and abs(out["metrics"]["nll"] - nll) < 0.2 * nll


def test_bad_settings_are_one_line_config_errors(digits):
    with pytest.raises(ConfigError, match="binarize"):
        genlab.create_model("pixelcnn", digits, binarize=True, levels=4)
    with pytest.raises(ConfigError, match="output"):
        genlab.create_model("pixelcnn", digits, output="logistic")
    with pytest.raises(ConfigError, match="n_mix"):
        genlab.create_model("pixelcnn", digits, output="logistic_mix", n_mix=0)
    with pytest.raises(ConfigError, match="levels"):
        genlab.create_model("pixelcnn", digits, levels=1)
    with pytest.raises(ConfigError, match="bernoulli"):
        genlab.create_model("pixelcnn", digits, output="bernoulli", levels=17)
    with pytest.raises(ConfigError, match="odd"):
        genlab.create_model("pixelcnn", digits, kernel_size=4)
    with pytest.raises(ConfigError, match="no intensity levels"):
        genlab.create_model("pixelcnn", DataSpec("image", (1, 4, 4), name="cont"))
    with pytest.raises(ConfigError, match="does not model vector"):
        genlab.create_model("pixelcnn", DataSpec("vector", (3,)))
    with pytest.raises(ConfigError, match="trained without conditional"):
        genlab.create_model("pixelcnn", digits, channels=4, n_layers=1, first_kernel=3).sample(2, y=1)
