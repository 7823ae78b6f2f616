"""Untrusted run directories: loading one never runs code, and every bad file is one line.

A crafted pickle (whose payload would create a file) is put where each file of a run is expected,
and every verb that reads runs (resume, sample, eval, report, genlab.load) must refuse it or not
read it, without ever running the payload. Then: a newer genlab, an unknown family, truncated
weights, hyperparameters edited to no longer fit the weights, a latent record pointing elsewhere
(only read) or back at itself, and config paths with '../' that must not make genlab write elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import genlab
from genlab.cli import main
from genlab.errors import GenlabError

SRC = Path(genlab.__file__).parent


class Payload:
    """Unpickling this creates `marker` (os.system is what a real attack would call)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def crafted(kind: str, marker: Path) -> bytes:
    if kind == "pickle":  # a bare pickle (what torch.save wrote before 1.6, and what pickle.dump writes)
        return pickle.dumps({"model": Payload(marker)})
    import io

    buf = io.BytesIO()  # a PyTorch zip file whose data.pkl holds the payload
    torch.save({"model": Payload(marker), "step": 3}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny vae run with a checkpoint (3 steps), trained once for the module."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("runs") / "vae"
    genlab.train("vae", "digits", d, steps=3, latent_dim=2, hidden=[16], net="mlp", checkpoint_every=2,
                 progress=False)
    assert (d / "checkpoint" / "last.pt").exists()
    return d


@pytest.fixture
def run(trained, in_tmp):
    shutil.copytree(trained, in_tmp / "run")
    return in_tmp / "run"


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("genlab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_the_payloads_do_run_when_unpickled(kind, tmp_path):
    """The payloads are real: loaded the unsafe way, they create their file (so the tests below can fail)."""
    marker = tmp_path / "ran"
    data = crafted(kind, marker)
    if kind == "pickle":
        pickle.loads(data)
    else:
        (tmp_path / "x.pt").write_bytes(data)
        torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


VERBS = {  # resume last: it rewrites model.safetensors
    "sample": ["sample", "run", "-n", "4", "--out", "s.npy"],
    "eval": ["eval", "run", "--n", "20", "--metrics", "fid", "--json"],
    "report": ["report", "run", "--out", "page/report.html", "--n", "20", "--quiet"],
    "resume": ["resume", "run", "--steps", "1", "--quiet"],
}
READERS = {"config.json": set(VERBS) | {"load"}, "model.safetensors": {"sample", "eval", "report", "load"},
           "checkpoint/last.pt": {"resume"}}


@pytest.mark.parametrize("kind", ["pickle", "torch"])
@pytest.mark.parametrize("file", sorted(READERS))
def test_a_crafted_pickle_in_a_run_never_runs(run, file, kind, in_tmp, capsys):
    """Every verb either refuses the file in one line or never reads it; the payload never runs."""
    marker = in_tmp / "PAYLOAD-RAN"
    (run / file).write_bytes(crafted(kind, marker))
    verbs = VERBS if file != "checkpoint/last.pt" else {"sample": VERBS["sample"], "resume": VERBS["resume"]}
    for verb, argv in verbs.items():
        rc = main(argv)
        if verb in READERS[file]:
            expected = 1 if verb == "report" and file == "model.safetensors" else 2  # report: the page shows it
            assert rc == expected, verb
            err = capsys.readouterr().err
            assert "refused" in err or verb == "report", (verb, err)
            assert "Traceback" not in err and err.count("\n") == 1, (verb, err)
        else:
            assert rc == 0, verb
        assert not marker.exists(), f"{verb} ran the payload of {file}"
    if "load" in READERS[file]:
        (run / file).write_bytes(crafted(kind, marker))  # resume rewrote model.safetensors
        with pytest.raises(GenlabError, match="refused"):
            genlab.load(run)
    if file == "model.safetensors":  # the page names the failure
        page = json.loads((in_tmp / "page" / "results.json").read_text())
        assert page["families"][0]["status"] == "failed" and "refused" in page["families"][0]["error"]
        assert "refused" in (in_tmp / "page" / "report.html").read_text()
    assert not marker.exists()


def test_every_load_call_refuses_pickles():
    """Every np.load in genlab passes allow_pickle=False (object arrays are pickles), every torch.load
    weights_only=True, and nothing calls pickle, joblib or yaml.load (only yaml.safe_load)."""
    import ast

    calls = {}
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
                name = f"{owner}.{node.func.attr}"
                kw = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                calls.setdefault(name, []).append((f.name, node.lineno, kw))
    assert len(calls["np.load"]) >= 1
    assert [c for c in calls["np.load"] if c[2].get("allow_pickle") is not False] == []
    assert [c for c in calls.get("torch.load", []) if c[2].get("weights_only") is not True] == []
    for unsafe in ("pickle.load", "pickle.loads", "joblib.load", "yaml.load", "yaml.unsafe_load", "np.fromfile"):
        assert unsafe not in calls, calls.get(unsafe)


def test_a_pickled_npy_as_data_or_mask_is_refused(run, in_tmp, capsys):
    marker = in_tmp / "PAYLOAD-RAN"
    np.save(in_tmp / "evil.npy", np.array([Payload(marker)] * 4, dtype=object), allow_pickle=True)
    np.savez(in_tmp / "evil.npz", x=np.array([Payload(marker)] * 4, dtype=object))
    assert main(["train", "vae", "--data", "evil.npy", "--steps", "1", "--out", "r", "--quiet"]) == 2
    one_line_error(capsys, "evil.npy", "cannot read as NumPy data")
    assert main(["train", "vae", "--data", "evil.npz", "--steps", "1", "--out", "r", "--quiet"]) == 2
    one_line_error(capsys, "evil.npz")
    assert main(["impute", "run", "--mask", "evil.npy", "-n", "4", "--no-baselines", "--quiet"]) == 2
    one_line_error(capsys, "evil.npy")
    assert not marker.exists() and not (in_tmp / "r").exists()


# -- config.json: newer, unknown, malformed, edited ------------------------------------------------------
def edit_config(run, **changes):
    cfg = json.loads((run / "config.json").read_text())
    for k, v in changes.items():
        if k.startswith("hparams."):
            cfg["hparams"][k[8:]] = v
        else:
            cfg[k] = v
    (run / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("change,needles", [
    ({"genlab_version": "99.1.0"}, ["written by genlab 99.1.0", "upgrade genlab"]),
    ({"format": 2}, ["run format 2", "upgrade genlab"]),
    ({"family": "vaex"}, ["unknown model 'vaex'; did you mean 'vae'?"]),
    ({"hparams.latent_dim": 3}, ["do not fit the model config.json describes", "size mismatch", "was config.json edited?"]),
    ({"hparams.latent_dim": 0}, ["invalid latent_dim=0 for 'vae'"]),
    ({"hparams.hidden": [16, 16]}, ["do not fit", "config.json edited?"]),
    ({"data": "digits"}, ["not a genlab config ('data' malformed)"]),
])
def test_config_from_elsewhere_is_one_line(run, change, needles, capsys):
    edit_config(run, **change)
    for argv in (VERBS["sample"], VERBS["resume"], VERBS["eval"]):
        assert main(argv) == 2, argv
        one_line_error(capsys, "run", *needles)
    rc = main(VERBS["report"])  # a page whose row says why (or, before any page, one line)
    out = capsys.readouterr()
    assert rc in (1, 2) and out.err.count("\n") == 1 and "Traceback" not in out.err
    assert all(n in (out.out + out.err) for n in needles)
    with pytest.raises(GenlabError):
        genlab.load(run)


@pytest.mark.parametrize("text,needle", [("{", "not valid JSON (Expecting"),
                                         ("[1, 2]", "a JSON list, not a mapping"),
                                         ("\x00\xff binary", "binary content"), ("", "not valid")])
def test_a_broken_config_json(run, text, needle, capsys):
    (run / "config.json").write_bytes(text.encode("latin-1"))
    for argv in (VERBS["sample"], VERBS["resume"], VERBS["report"]):
        assert main(argv) == 2
        one_line_error(capsys, "run/config.json", needle)


def test_truncated_weights_and_checkpoint(run, capsys):
    w = run / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    assert main(VERBS["sample"]) == 2
    one_line_error(capsys, "model.safetensors", "truncated or corrupt")
    c = run / "checkpoint" / "last.pt"
    c.write_bytes(c.read_bytes()[: c.stat().st_size // 2])
    assert main(VERBS["resume"]) == 2
    one_line_error(capsys, "last.pt", "truncated or corrupt")


def test_a_checkpoint_of_another_shape_is_refused_on_resume(run, trained, in_tmp, capsys):
    """last.pt holds only tensors, but of another model (or not a genlab checkpoint at all)."""
    torch.save({"model": {"w": torch.zeros(3)}, "step": 1}, run / "checkpoint" / "last.pt")
    assert main(VERBS["resume"]) == 2
    one_line_error(capsys, "last.pt", "not a genlab checkpoint")
    torch.save(torch.zeros(3), run / "checkpoint" / "last.pt")
    assert main(VERBS["resume"]) == 2
    one_line_error(capsys, "last.pt", "not a mapping")
    state = torch.load(trained / "checkpoint" / "last.pt", weights_only=True)
    state["model"] = {k: torch.zeros(1) for k in state["model"]}
    torch.save(state, run / "checkpoint" / "last.pt")
    assert main(VERBS["resume"]) == 2
    one_line_error(capsys, "last.pt", "do not fit the model")


# -- paths in a config: read, never written ---------------------------------------------------------------
def tree(root: Path, skip=()) -> dict:
    """{relative path: sha256} of every file under root, outside the `skip` folders."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(rel.parts[0] == s for s in skip):
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def latent_run(trained, tmp_path_factory):
    """gmm over the codes of the vae run (a closed-form fit: fast)."""
    d = tmp_path_factory.mktemp("latent") / "gmm-latent"
    genlab.train("gmm", "digits", d, latent=trained, n_components=2, progress=False)
    return d


def test_a_latent_record_pointing_elsewhere_is_only_read(latent_run, trained, in_tmp, capsys):
    """The record points through '../' to an autoencoder run outside; sample, eval and report read it, and
    write only in the latent run (and the page's folder)."""
    elsewhere = in_tmp / "elsewhere" / "deep"
    shutil.copytree(trained, elsewhere / "ae")
    shutil.copytree(latent_run, in_tmp / "work" / "lat")
    cfg = json.loads((in_tmp / "work" / "lat" / "config.json").read_text())
    cfg["latent"]["run"] = "/nonexistent/ae"  # only the relative path finds it
    cfg["latent"]["run_relative"] = "../../elsewhere/deep/ae"
    (in_tmp / "work" / "lat" / "config.json").write_text(json.dumps(cfg))
    before = tree(in_tmp, skip=("work", "page"))
    os.chdir(in_tmp / "work")
    assert main(["sample", "lat", "-n", "4"]) == 0
    assert main(["eval", "lat", "--n", "20", "--metrics", "fid", "--json"]) == 0
    assert main(["report", "lat", "--out", "../page", "--n", "20", "--quiet"]) == 0
    assert tree(in_tmp, skip=("work", "page")) == before  # the autoencoder's run: not one byte changed
    capsys.readouterr()


def test_a_latent_record_pointing_at_itself_or_malformed(latent_run, in_tmp, capsys):
    lat = in_tmp / "lat"
    shutil.copytree(latent_run, lat)
    cfg = json.loads((lat / "config.json").read_text())
    (lat / "config.json").write_text(json.dumps({**cfg, "latent": {**cfg["latent"], "run": str(lat.resolve()),
                                                                   "sha256": genlab.models.latent.weights_sha256(lat)}}))
    assert main(["sample", "lat", "-n", "4", "--out", "s.npy"]) == 2
    one_line_error(capsys, "a cycle")
    (lat / "config.json").write_text(json.dumps({**cfg, "latent": "runs/ae"}))
    assert main(["sample", "lat", "-n", "4", "--out", "s.npy"]) == 2
    one_line_error(capsys, "'latent' record is malformed")


def test_dotdot_paths_in_a_config_write_nowhere_else(run, in_tmp, capsys):
    """Every string of config.json that could name a place ('../' names, the data set's name) changes
    where nothing is written: sample, eval and report write only in the run and the page's folder."""
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["name"] = "../../../escaped"
    cfg["created"] = "../../escaped"
    (run / "config.json").write_text(json.dumps(cfg))
    before = tree(in_tmp, skip=("run", "page"))
    assert main(["sample", "run", "-n", "4"]) == 0
    assert main(["report", "run", "--out", "page", "--n", "20", "--quiet"]) == 0  # evaluates: RUN/eval.json
    assert tree(in_tmp, skip=("run", "page")) == before
    assert not list(in_tmp.parent.glob("escaped*")) and not list(in_tmp.parent.parent.glob("escaped*"))
    cfg["data"]["source"]["name"] = "../../../elsewhere.npy"  # the data is read from there: missing, one line
    (run / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["eval", "run", "--n", "20", "--metrics", "fid"]) == 2
    one_line_error(capsys, "elsewhere.npy")
