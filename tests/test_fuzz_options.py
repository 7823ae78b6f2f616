"""Fuzzing the option parsers with Hypothesis: random command lines, `--set` pairs, hyperparameters and
data options end in success, a GenlabError (one line) or argparse's SystemExit(2), never another
exception or a hang. Bounded: each property has max_examples and a deadline (the file runs in seconds).
(Random bytes as data files: tests/test_fuzz_data.py.)
"""

from __future__ import annotations

import contextlib
import json
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genlab.cli import build_parser, main, parse_settings
from genlab.data import load_dataset
from genlab.data.spec import DataSpec
from genlab.errors import GenlabError
from genlab.models import create_model, hparam_ranges, hyperparameters
from genlab.params import check_settings
from genlab.train.config import TRAIN_RANGES, Budget, TrainConfig, split_settings

# deadlines are generous (a shared, loaded machine); they catch a hang, not a slow example. The suite runs a
# fixed (derandomized) sample; GENLAB_FUZZ_SCALE=20 runs 20x as many fresh random examples (a longer hunt).
SCALE = float(os.environ.get("GENLAB_FUZZ_SCALE", "1"))


def bounded(examples: int, deadline_ms: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=deadline_ms, derandomize=SCALE == 1,
                    database=None, suppress_health_check=[HealthCheck.too_slow])


FAST = bounded(150, 5000)

VERBS = ["train", "resume", "sample", "eval", "explore", "translate", "experiment", "compare", "report", "anomaly",
         "impute", "denoise", "judge", "datasets", "models"]
OPTIONS = ["--data", "--steps", "--epochs", "--minutes", "--out", "--seed", "--set", "--config", "--classes", "-n",
           "--n", "--label", "--sampler", "--eta", "--guidance", "--metrics", "--split", "--models", "--budget",
           "--nll-seconds", "--mask", "--noise", "--fpr", "--port", "--what", "--pairs", "--direction", "--quiet",
           "--json", "--list", "--help", "--version", "-h", "--"]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
token = st.one_of(st.sampled_from(VERBS + OPTIONS + ["vae", "digits", "0", "-1", "1e9", "nan", "x=1", "lr=abc"]), text)
# YAML-ish scalars and lists as a user types them after `--set key=`
value_text = st.one_of(text, st.sampled_from(["1", "-3", "0", "1e-3", "-1e9", "1e400", ".nan", ".inf", "true", "null",
                                              "[1, 2]", "[", "{a: 1}", "!!python/object:os.system", "'x'", "~",
                                              "&a [*a]", "0x10", "1_000", "2026-12-01"]))
values = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=8), st.lists(st.integers(-2, 64), max_size=3),
                   st.lists(st.floats(-2, 2), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        yield err


@FAST
@given(st.lists(token, max_size=8))
def test_the_argument_parser_never_crashes(argv):
    with quiet():
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:
            assert e.code in (0, 2)


@FAST
@given(st.lists(st.tuples(st.sampled_from(["lr", "latent_dim", "data.sigma", "beta", "", "a.b.c", "=", " x "]) | text,
                          value_text), max_size=4), st.booleans())
def test_set_pairs_parse_to_settings_or_one_line(pairs, with_equals):
    raw = [f"{k}={v}" if with_equals else f"{k}{v}" for k, v in pairs]
    try:
        out = parse_settings(raw)
    except GenlabError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(out, dict) and len(out) <= len(raw)
    try:  # as `genlab train` splits them: data options, hyperparameters, trainer settings
        model_kw, train_kw = split_settings({k: v for k, v in out.items() if not k.startswith("data.")},
                                            hyperparameters("vae"))
        TrainConfig(**train_kw)
    except GenlabError as e:
        assert "\n" not in str(e)


SPEC = DataSpec("vector", (2,), 0, [], name="fuzz")


@bounded(120, 10000)
@given(st.sampled_from(["ae", "vae", "gan", "gmm", "maf", "realnvp", "pca", "fm", "ddpm"]), st.data())
def test_random_hyperparameters_build_a_model_or_one_line(family, data):
    """Any value of any hyperparameter (widths kept small, so building stays fast): a model or a GenlabError."""
    names = sorted(hyperparameters(family))
    chosen = data.draw(st.dictionaries(st.sampled_from(names + ["nope"]), values, max_size=3))
    for k in ("hidden", "channels", "mults", "n_components", "n_layers", "timesteps", "base", "time_dim",
              "latent_dim", "bins", "eval_k", "iwae_k", "max_iter", "n_init"):
        v = chosen.get(k)
        if isinstance(v, int) and v > 64 or isinstance(v, list) and any(isinstance(e, int) and e > 64 for e in v):
            chosen[k] = 8  # big is valid, only slow to build
    try:
        model = create_model(family, SPEC, **chosen)
    except GenlabError as e:
        assert "\n" not in str(e)
        return
    check_settings(model.config, hparam_ranges(family))  # what was accepted is in range


@FAST
@given(st.dictionaries(st.sampled_from(sorted(TRAIN_RANGES) + ["nope"]), values, max_size=4))
def test_random_trainer_settings(settings_):
    try:
        TrainConfig.from_dict(settings_)  # as a run's config.json gives them
    except GenlabError as e:
        assert "\n" not in str(e)


@FAST
@given(st.one_of(st.none(), values), st.one_of(st.none(), values), st.one_of(st.none(), values))
def test_random_budgets(epochs, steps, minutes):
    try:
        Budget(epochs, steps, minutes)
    except GenlabError as e:
        assert "\n" not in str(e)


@bounded(100, 10000)
@given(st.sampled_from(["8gaussians", "moons", "checkerboard", "digits"]),
       st.dictionaries(st.sampled_from(["n_train", "n_test", "sigma", "seed", "test_fraction", "sze", "size"]),
                       values, max_size=3))
def test_random_data_options(name, options):
    for k in ("n_train", "n_test"):  # big is valid, only slow to draw
        if isinstance(options.get(k), int) and options[k] > 300:
            options[k] = 300
    try:
        ds = load_dataset(name, **options)
    except GenlabError as e:
        assert "\n" not in str(e)
        return
    assert len(ds.train) >= 1 and len(ds.test) >= 1


@bounded(25, 10000)
@given(st.lists(st.tuples(st.sampled_from(["lr", "latent_dim", "beta", "data.sigma", "data.n_train", "hidden",
                                           "latent", "stream", "data.sze", "batch_size"]), value_text), max_size=3))
def test_train_command_lines_fail_in_one_line_before_training(tmp_path_factory, pairs):
    """`genlab train vae --data 8gaussians --set ... --steps 0`: every random --set is judged before any training
    starts (steps 0 is refused last), and no run directory is created."""
    out = tmp_path_factory.mktemp("fz") / "r"
    argv = ["train", "vae", "--data", "8gaussians", "--steps", "0", "--out", str(out), "--quiet"]
    for k, v in pairs:
        argv += ["--set", f"{k}={v}"]
    with quiet() as err:
        rc = main(argv)
    assert rc == 2 and err.getvalue().startswith("genlab: error: ") and err.getvalue().count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("bad", ["!!python/object/apply:os.system ['touch PWNED']", "!!python/name:os.system"])
def test_set_values_are_parsed_safely(bad, in_tmp):
    """--set values go through yaml.safe_load: a YAML tag that would call Python stays text."""
    out = parse_settings([f"x={bad}"])
    assert out == {"x": bad} and not (in_tmp / "PWNED").exists()


def test_numbers_in_exponent_form_are_numbers_on_the_command_line_and_in_yaml(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as text; `--set lr=1e-3` and `lr: 1e-3` in a config file must be
    the number the docs show (it was refused as "invalid lr='1e-3'"), in lists too; other text stays text."""
    from genlab.cli import read_config

    assert parse_settings(["lr=1e-3", "hidden=[1e2, 64]", "x=2E5", "y=-1.5e-2", "name=1e3x"]) == {
        "lr": 0.001, "hidden": [100.0, 64], "x": 200000.0, "y": -0.015, "name": "1e3x"}
    assert isinstance(parse_settings(["lr=&0 [*0]"])["lr"], list)  # a list that holds itself (found by the fuzzer)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1e-3\nbeta: 2\nactivation: relu\n")
    assert read_config(cfg) == {"lr": 0.001, "beta": 2, "activation": "relu"}
    run = tmp_path / "run"
    with quiet():
        assert main(["train", "pca", "--data", "8gaussians", "--steps", "1", "--set", "lr=1e-3", "--quiet",
                     "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.001
