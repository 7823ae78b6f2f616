"""Bad options: one line `genlab: error: ...`, a non-zero exit, no partial run directory, nothing lost.

Each family declares the valid values of its hyperparameters (`hparam_ranges`, genlab.params); the
trainer and the data sets do the same for theirs. These tests check the tables are complete and
that every case of issue 22's list gets its one line.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genlab
from genlab.cli import main
from genlab.data import DATASETS
from genlab.data.registry import OPTION_RANGES
from genlab.errors import ConfigError
from genlab.models import MODELS, hparam_ranges, hyperparameters
from genlab.params import check_settings
from genlab.train.config import TRAIN_RANGES, TrainConfig


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("genlab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def listing(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


# -- the declared ranges ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(n for n, c in MODELS.items() if c.__module__.startswith("genlab.")))
def test_every_hyperparameter_has_a_declared_range_its_default_meets(family):   # genlab's own (not tests') families
    assert set(hparam_ranges(family)) == set(hyperparameters(family))
    check_settings(hyperparameters(family), hparam_ranges(family), family)  # the defaults are valid


@pytest.mark.parametrize("family", sorted(n for n, c in MODELS.items() if c.__module__.startswith("genlab.")))
def test_every_sample_option_is_checked_and_its_default_passes(family):
    cls = MODELS[family]
    options = cls.sample_options()
    unchecked = {"z"} if family == "gan" else set()  # a tensor of codes, from Python only
    assert set(cls.sample_checks()) == set(options) - unchecked
    check_settings({k: v for k, v in options.items() if v is not None}, cls.sample_checks(), family)


@pytest.mark.parametrize("family,options,message", [
    ("ddpm", {"steps": "abc"}, "invalid steps='abc' for 'ddpm' samples (must be an integer >= 1 or null)"),
    ("ddpm", {"eta": 1.5}, "invalid eta=1.5 for 'ddpm' samples (must be a number >= 0 and <= 1)"),
    ("ddpm", {"sampler": "heum"}, "did you mean 'heun'?"),
    ("ddpm", {"spacing": "even"}, "must be one of linspace, leading, trailing"),
    ("fm", {"steps": 0}, "invalid steps=0 for 'fm' samples"),
    ("fm", {"rtol": -1e-3}, "invalid rtol=-0.001 for 'fm' samples (must be a number > 0)"),
    ("gan", {"refine": 2.5}, "invalid refine=2.5 for 'gan' samples (must be an integer >= 0)"),
    ("maf", {"temperature": 0}, "invalid temperature=0 for 'maf' samples (must be a number > 0)"),
    ("pixelcnn", {"temperature": "hot"}, "invalid temperature='hot' for 'pixelcnn' samples"),
])
def test_out_of_range_sample_options_are_refused_before_sampling(family, options, message, digits):
    model = genlab.create_model(family, digits)
    with pytest.raises(ConfigError) as e:
        model.check_sample_options(options)
    assert message in str(e.value)
    with pytest.raises(ConfigError, match="invalid"):  # the evaluation protocol checks them too
        genlab.evaluate(model, digits, ["fid"], n=20, **options)


def test_trainer_settings_and_data_options_have_ranges():
    import inspect

    from genlab.data.arrays import load_array_file
    from genlab.data.folder import load_image_folder
    from genlab.data.paired import load_paired_folder

    assert set(TRAIN_RANGES) == set(TrainConfig.names())
    check_settings(TrainConfig().to_dict(), TRAIN_RANGES)
    options = {k for e in DATASETS.values() for k in e.options()}
    options |= {k for f in (load_array_file, load_image_folder, load_paired_folder)
                for k in inspect.signature(f).parameters if k != "path"}
    assert options <= set(OPTION_RANGES), options - set(OPTION_RANGES)
    for e in DATASETS.values():
        check_settings(e.options(), OPTION_RANGES, e.name)


@pytest.mark.parametrize("family,setting,message", [
    ("vae", {"latent_dim": 0}, "invalid latent_dim=0 for 'vae' (must be an integer >= 1)"),
    ("ae", {"latent_dim": 0}, "invalid latent_dim=0 for 'ae'"),
    ("gan", {"latent_dim": 0}, "invalid latent_dim=0 for 'gan'"),
    ("vae", {"latent_dim": -3}, "invalid latent_dim=-3"),
    ("vae", {"latent_dim": 2.5}, "must be an integer"),
    ("vae", {"latent_dim": True}, "must be an integer"),
    ("vae", {"beta": -1}, "invalid beta=-1 for 'vae' (must be a number >= 0)"),
    ("vae", {"beta": float("nan")}, "invalid beta=nan"),
    ("vae", {"hidden": [16, 0]}, "invalid hidden=[16, 0]"),
    ("ae", {"corruption": "gausian"}, "did you mean 'gaussian'?"),
    ("ddpm", {"timesteps": 0}, "invalid timesteps=0 for 'ddpm' (must be an integer >= 2)"),
    ("fm", {"sample_steps": 0}, "invalid sample_steps=0"),
    ("gmm", {"n_components": 0}, "invalid n_components=0"),
    ("maf", {"alpha": 0.5}, "must be a number > 0 and < 0.5"),
    ("pixelcnn", {"levels": 1}, "invalid levels=1"),
])
def test_out_of_range_hyperparameters_are_refused(family, setting, message, digits):
    with pytest.raises(ConfigError) as e:
        genlab.create_model(family, digits, **setting)
    assert message in str(e.value)


def test_models_family_lists_the_ranges(capsys):
    assert main(["models", "vae"]) == 0
    out = capsys.readouterr().out
    assert "latent_dim=16  (an integer >= 1)" in out and "beta=1.0  (a number >= 0)" in out
    assert main(["models", "ddpm"]) == 0
    out = capsys.readouterr().out
    assert "sample options" in out and "eta=0.0  (a number >= 0 and <= 1)" in out


# -- the CLI, case by case --------------------------------------------------------------------------
TRAIN = ["train", "vae", "--steps", "1", "--quiet", "--out", "r", "--set", "hidden=[8]", "--set", "net=mlp"]


@pytest.mark.parametrize("argv,message", [
    (TRAIN + ["--set", "lr=abc"], "invalid lr='abc' (must be a number > 0)"),
    (TRAIN + ["--set", "lr=-1"], "invalid lr=-1"),
    (TRAIN + ["--set", "batch_size=0"], "invalid batch_size=0"),
    (TRAIN + ["--set", "latent_dim=-3"], "invalid latent_dim=-3 for 'vae'"),
    (TRAIN + ["--set", "latent_dim=0"], "invalid latent_dim=0 for 'vae'"),
    (["train", "ae", "--steps", "1", "--out", "r", "--set", "latent_dim=0"], "invalid latent_dim=0 for 'ae'"),
    (["train", "gan", "--steps", "1", "--out", "r", "--set", "latent_dim=0"], "invalid latent_dim=0 for 'gan'"),
    (TRAIN + ["--set", "beta=-1"], "invalid beta=-1 for 'vae'"),
    (["train", "vae", "--data", "8gaussians", "--steps", "1", "--out", "r", "--set", "data.sigma=-1"],
     "invalid sigma=-1 for data set '8gaussians' (must be a number >= 0)"),
    (["train", "vae", "--data", "8gaussians", "--steps", "1", "--out", "r", "--set", "data.sze=3"],
     "unknown option for data set '8gaussians' 'sze'; did you mean 'seed'?"),
    (["train", "vae", "--data", "x.npy", "--steps", "1", "--out", "r", "--set", "data.test_fracton=0.1"],
     "unknown option for a .npy file 'test_fracton'; did you mean 'test_fraction'?"),
    (["train", "vae", "--data", "x.npy", "--steps", "1", "--out", "r", "--set", "data.test_fraction=1.5"],
     "invalid test_fraction=1.5"),
    (["train", "vae", "--data", "8gaussians", "--steps", "1", "--out", "r", "--set", "data.n_train=abc"],
     "invalid n_train='abc'"),
    (["train", "ddpm", "--steps", "1", "--out", "r", "--set", "timesteps=0"], "invalid timesteps=0"),
    (TRAIN[:2] + ["--steps", "0", "--out", "r"], "steps must be a positive number"),
    (TRAIN + ["--config", "broken.json"], "broken.json: not valid JSON"),
    (TRAIN + ["--config", "list.yaml"], "expected a mapping"),
    (TRAIN + ["--config", "evil.json"], "evil.json: refused: it is a Python pickle, not JSON"),
    (TRAIN + ["--config", "evil.yaml"], "evil.yaml: not valid YAML (binary content)"),
    (TRAIN + ["--set", "latnt_dim=2"], "did you mean 'latent_dim'?"),
    (TRAIN + ["--set", "seed=x"], "invalid seed='x': expected a number"),
    (TRAIN + ["--seed", "1", "--set", "seed=3"], "seed given twice (--seed and in --set/--config)"),
    (TRAIN + ["--set", "epochs=2"], "give one budget, not epochs and steps"),
    (TRAIN + ["--set", "classes=1"], "classes is not a setting: give it as --classes"),
    (["train", "vea", "--out", "r"], "unknown model 'vea'; did you mean 'vae'?"),
    (["train", "vae", "--data", "fashion-mnst", "--out", "r"], "did you mean 'fashion-mnist'?"),
    (["experiment", "mode-colapse"], "unknown experiment 'mode-colapse'"),
])
def test_bad_training_options_leave_nothing_behind(argv, message, in_tmp, capsys):
    import numpy as np

    np.save(in_tmp / "x.npy", np.random.default_rng(0).normal(size=(50, 3)).astype("float32"))
    (in_tmp / "broken.json").write_text('{"lr": 0.1,')
    (in_tmp / "list.yaml").write_text("- lr\n- 0.1\n")
    for name in ("evil.json", "evil.yaml"):  # a pickle whose payload would create a file
        (in_tmp / name).write_bytes(pickle.dumps(Payload(in_tmp / "PAYLOAD-RAN")))
    before = listing(in_tmp)
    assert main(argv) == 2
    one_line(capsys, message)
    assert listing(in_tmp) == before  # no run directory, nothing touched (and no payload ran)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """An unconditional and a conditional vae (8x8 digits, 2 steps)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("opts")
    for name, extra in (("v", {}), ("c", {"conditional": True})):
        genlab.train("vae", "digits", root / name, steps=2, latent_dim=2, hidden=[8], net="mlp", progress=False,
                     **extra)
    return root


@pytest.fixture
def runs(tiny_runs, in_tmp):
    import shutil

    for name in ("v", "c"):
        shutil.copytree(tiny_runs / name, in_tmp / name)
    return in_tmp


@pytest.mark.parametrize("argv,message", [
    (["sample", "v", "-n", "100000000", "--out", "s.npy"], "-n 100000000: 23.8 GiB of samples; at most 4194304"),
    (["sample", "v", "-n", "20000", "--out", "s.png"], "a PNG grid shows at most 10000 samples"),
    (["sample", "v", "-n", "0", "--out", "s.png"], "-n must be at least 1"),
    (["sample", "c", "--label", "10", "--out", "s.png"], "label must be in 0..9"),
    (["sample", "c", "--label", "-1", "--out", "s.png"], "label must be in 0..9"),
    (["sample", "v", "--label", "3", "--out", "s.png"], "without conditional=true"),
    (["sample", "v", "--sampler", "heun", "--out", "s.png"], "'vae' samples without option(s) sampler"),
    (["sample", "v", "--set", "mean=perhaps", "--out", "s.png"], "invalid mean='perhaps' for 'vae' samples (must be true or false)"),
    (["eval", "v", "--set", "mean=3"], "invalid mean=3 for 'vae' samples (must be true or false)"),
    (["eval", "v", "--n", "0"], "n must be positive"),
    (["eval", "v", "--n", "100000", "--metrics", "fid"], "larger than the 360 examples of the test split"),
    (["eval", "v", "--metrics", "fidd"], "unknown metric 'fidd'; did you mean 'fid'?"),
    (["resume", "v", "--steps", "0"], "steps must be a positive number"),
])
def test_bad_sampling_and_evaluation_options(argv, message, runs, capsys):
    before = listing(runs)
    assert main(argv) == 2
    one_line(capsys, message)
    assert listing(runs) == before


# -- outputs that cannot be written -------------------------------------------------------------------
def bad_outputs(root: Path, suffix: str):
    (root / "afile").write_text("keep me")
    (root / "adir").mkdir()
    cases = [("", "--out is empty"), ("afile/sub" + suffix, "afile is a file, not a directory")]
    if suffix:
        cases.append(("adir", "a directory is there"))
    else:
        cases.append(("afile", "a file is there, not a directory"))
    if Path("/proc/self").is_dir():  # a place nobody can create files in, root included
        cases.append(("/proc/genlab-test/x" + suffix, "cannot write in /proc"))
    if os.geteuid() != 0:  # root writes through permissions
        (root / "locked").mkdir(mode=0o500)
        cases.append(("locked/x" + suffix, "cannot write in locked"))
    return cases


def test_seed_and_budget_from_a_config_file_are_used(in_tmp):
    (in_tmp / "c.yaml").write_text("seed: 3\nsteps: 2\nhidden: [8]\nnet: mlp\n")
    assert main(["train", "vae", "--quiet", "--out", "r", "--config", "c.yaml"]) == 0
    cfg = json.loads((in_tmp / "r" / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["budget"] == {"steps": 2}, (cfg["seed"], cfg["budget"])


def test_unwritable_or_invalid_out_for_train_and_sample(runs, capsys):
    for out, message in bad_outputs(runs, ""):
        before = listing(runs)
        assert main(["train", "vae", "--steps", "1", "--quiet", "--out", out]) == 2, out
        one_line(capsys, message)
        assert listing(runs) == before, out
    assert (runs / "afile").read_text() == "keep me"
    for out in ("afile", "adir"):
        (runs / out).unlink() if out == "afile" else (runs / out).rmdir()
    for out, message in bad_outputs(runs, ".npy"):
        before = listing(runs)
        assert main(["sample", "v", "-n", "4", "--out", out]) == 2, out
        one_line(capsys, message)
        assert listing(runs) == before, out
    assert (runs / "afile").read_text() == "keep me"


# -- pipes, --help, compare ---------------------------------------------------------------------------
def test_output_piped_into_head():
    """`genlab models | head -1` and `genlab train --help | head -1`: the first line, and no BrokenPipe
    traceback (nor the interpreter's 'Exception ignored' at exit). One shell, two pipelines."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    g = f"{sys.executable} -m genlab"
    r = subprocess.run(f"{g} models | head -1; {g} train --help | head -1", shell=True, capture_output=True,
                       text=True, env=env, timeout=120)
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("ae:") and lines[1].startswith("usage: genlab train")
    assert r.stderr == "", r.stderr


def test_compare_exits_non_zero_when_a_family_fails_and_still_writes_the_page(in_tmp, capsys):
    rc = main(["compare", "--data", "8gaussians", "--models", "gmm", "--set", "gmm.n_init=0", "--steps", "1",
               "--n", "100", "--out", "cmp", "--quiet", "--nll-seconds", "1"])
    assert rc == 1
    err = one_line(capsys, "1 of 1 failed: gmm (train)", "cmp/report.html")
    results = json.loads((in_tmp / "cmp" / "results.json").read_text())
    assert results["families"][0]["status"] == "failed" and "invalid n_init=0" in results["families"][0]["error"]
    assert "invalid n_init=0" in (in_tmp / "cmp" / "report.html").read_text()
    assert err
