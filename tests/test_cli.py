"""The CLI end to end on digits with tiny budgets, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genlab.cli import build_parser, default_sample_path, main


def run_cli(*args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "genlab", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_train_sample_resume_end_to_end(in_tmp):
    r = run_cli("train", "vae", "--data", "digits", "--steps", "30", "--out", "run", "--set", "latent_dim=4",
                "--set", "checkpoint_every=10", "--set", "sample_every=15")
    assert r.returncode == 0, r.stderr
    assert "run directory: run" in r.stdout
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "samples.png", "reconstructions.png",
                 "loss.png", "checkpoint/last.pt", "progress/step0000015.png"):
        assert (in_tmp / "run" / name).exists(), name
    cfg = json.loads((in_tmp / "run" / "config.json").read_text())
    assert cfg["family"] == "vae" and cfg["hparams"]["latent_dim"] == 4 and cfg["seed"] == 0
    assert cfg["data"]["source"]["name"] == "digits"
    records = [json.loads(line) for line in (in_tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 30 and "kl" in records[-1]

    assert main(["sample", "run", "-n", "16", "--out", "s.npy"]) == 0
    assert np.load(in_tmp / "s.npy").shape == (16, 1, 8, 8)
    assert main(["sample", "run", "-n", "9", "--out", "s.png"]) == 0 and (in_tmp / "s.png").exists()
    training_grid = (in_tmp / "run" / "samples.png").read_bytes()
    assert main(["sample", "run", "-n", "4"]) == 0 and main(["sample", "run", "-n", "4", "--seed", "3"]) == 0
    assert (in_tmp / "run" / "sampled.png").exists() and (in_tmp / "run" / "sampled-seed3.png").exists()
    assert (in_tmp / "run" / "samples.png").read_bytes() == training_grid  # the training's grid is kept
    names = {"-n 4": "sampled.png", "--sampler heun --steps 25": "sampled-heun-25steps.png",
             "--sampler ddim --steps 50 --label 7 --guidance 3": "sampled-ddim-50steps-label7-w3.png"}
    for options, name in names.items():  # the names docs/cli.md promises
        assert default_sample_path(build_parser().parse_args(["sample", "run", *options.split()])) == Path("run") / name
    assert main(["resume", "run", "--steps", "5", "--quiet"]) == 0
    assert json.loads((in_tmp / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 35


def test_train_with_config_file_classes_and_toy_data_options(in_tmp, capsys):
    (in_tmp / "c.yaml").write_text("latent_dim: 2\nlr: 0.002\n")
    assert main(["train", "ae", "--data", "digits", "--classes", "0,3", "--steps", "5", "--config", "c.yaml",
                 "--out", "r1", "--quiet"]) == 0
    cfg = json.loads((in_tmp / "r1" / "config.json").read_text())
    assert cfg["hparams"]["latent_dim"] == 2 and cfg["train"]["lr"] == 0.002
    assert cfg["data"]["source"]["classes"] == [0, 3]
    assert main(["train", "vae", "--data", "8gaussians", "--steps", "5", "--set", "data.sigma=0.05",
                 "--set", "data.n_train=500", "--out", "r2", "--quiet"]) == 0
    cfg = json.loads((in_tmp / "r2" / "config.json").read_text())
    assert cfg["data"]["source"]["options"]["sigma"] == 0.05
    assert (in_tmp / "r2" / "samples.png").exists()  # a scatter against the data


def test_conditional_label_sampling(in_tmp):
    assert main(["train", "vae", "--steps", "5", "--set", "conditional=true", "--out", "c", "--quiet"]) == 0
    assert main(["sample", "c", "-n", "4", "--label", "7", "--out", "c.npy"]) == 0


@pytest.mark.parametrize("args,message", [
    (["train", "vea"], "unknown model 'vea'; did you mean 'vae'?"),
    (["train", "vae", "--data", "digitz"], "unknown data set 'digitz'; did you mean 'digits'?"),
    (["train", "vae", "--set", "latent=3"], "did you mean 'latent_dim'?"),
    (["train", "vae", "--set", "latent_dim"], "--set expects key=value"),
    (["train", "vae", "--config", "missing.yaml"], "no such config file"),
    (["train", "vae", "--data", "nothere.npy"], "no such file"),
    (["train", "vae", "--classes", "11", "--steps", "1"], "classes [11] not in data set 'digits'"),
    (["train", "vae", "--set", "conditional=true", "--data", "moons"], "needs labelled data"),
    (["sample", "nowhere", "--out", "x.png"], "not a genlab run"),
    (["resume", "nowhere"], "not a genlab run"),
    (["models", "gann"], "unknown model 'gann'"),
])
def test_user_mistakes_get_one_line_errors(args, message, in_tmp, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_sample_label_on_unconditional_run_and_bad_suffix(in_tmp, capsys):
    assert main(["train", "pca", "--out", "p", "--quiet"]) == 0
    assert main(["sample", "p", "--label", "3", "--out", "x.png"]) == 2
    assert "without conditional=true" in capsys.readouterr().err
    assert main(["sample", "p", "--out", "x.jpg"]) == 2
    assert "--out must end in .png or .npy" in capsys.readouterr().err


def test_listings_and_help():
    r = run_cli("models")
    assert r.returncode == 0 and "vae:" in r.stdout and "latent_dim=16" in r.stdout
    r = run_cli("datasets")
    assert r.returncode == 0 and "digits" in r.stdout and "25gaussians" in r.stdout
    for verb in ("train", "resume", "sample", "datasets", "models"):
        assert run_cli(verb, "--help").returncode == 0
