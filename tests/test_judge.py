"""`genlab judge`: the study database, the scores against known truth, the JSON API's refusals, 20
concurrent raters against a running server, and the scores beside FD on the report page."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from genlab.cli import main
from genlab.workflows.judge import Study, create_study, study_scores
from genlab.workflows.judge.scores import LAM, bootstrap_bradley_terry, fit_bradley_terry, wilson
from genlab.workflows.judge.study import CHECK_RATE, connect

REPO = Path(__file__).resolve().parents[1]


def tiny_runs(root: Path) -> list[Path]:
    """Two digit models without training: PCA fitted in closed form, an untrained autoencoder."""
    from genlab.data import load_dataset
    from genlab.models import create_model

    ds = load_dataset("digits")
    pca = create_model("pca", ds, latent_dim=8)
    pca.fit_closed_form(ds)
    pca.save(root / "pca")
    create_model("ae", ds).save(root / "ae")
    return [root / "pca", root / "ae"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory.mktemp("judge-runs"))


# -- scores against known truth --------------------------------------------------------------
def simulate(true: np.ndarray, n: int, rng) -> np.ndarray:
    """Win counts of n judgements, pairs drawn at random, i preferred to j with P = sigma(t_i - t_j)."""
    K = len(true)
    i = rng.integers(0, K, n)
    j = (i + rng.integers(1, K, n)) % K
    win = rng.random(n) < 1 / (1 + np.exp(-(true[i] - true[j])))
    W = np.zeros((K, K))
    np.add.at(W, (np.where(win, i, j), np.where(win, j, i)), 1)
    return W


def test_bradley_terry_fit_is_the_penalised_mle_of_scipy():
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    for W in (simulate(np.array([-1.0, 0.0, 0.3, 0.7]), 300, rng),
              np.array([[0, 5, 3], [0, 0, 4], [0, 1, 0]], float)):  # model 0 never loses: still finite
        def objective(t):
            d = t[:, None] - t[None, :]
            return (W * np.logaddexp(0, -d)).sum() + LAM / 2 * (t ** 2).sum()

        ref = minimize(objective, np.zeros(len(W)), method="BFGS", options={"gtol": 1e-9}).x
        theta = fit_bradley_terry(W)
        assert np.all(np.isfinite(theta)) and abs(theta.sum()) < 1e-8  # the ridge centres the scale
        assert np.allclose(theta, ref, atol=1e-4), (theta, ref)
        assert objective(theta) <= objective(ref) + 1e-9
    # batched fits agree with single ones
    Ws = np.stack([simulate(np.array([0.5, -0.5, 0.0]), 100, rng) for _ in range(3)])
    assert np.allclose(fit_bradley_terry(Ws), [fit_bradley_terry(w) for w in Ws])


def test_known_strengths_recovered_and_intervals_cover_at_the_stated_rate():
    """50 simulated studies of 400 judgements over 4 models with known strengths: the fitted order is the
    true one, and the 95% bootstrap intervals hold the true strengths about 95% of the time."""
    true = np.array([-1.0, -0.3, 0.4, 0.9])
    true -= true.mean()
    rng = np.random.default_rng(0)
    covered, ordered, width = [], 0, []
    for s in range(50):
        theta, lo, hi = bootstrap_bradley_terry(simulate(true, 400, rng), n_boot=400, seed=s)
        covered += list((lo <= true) & (true <= hi))
        ordered += bool(np.all(np.argsort(theta) == np.argsort(true)))
        width.append(np.mean(hi - lo))
    rate = np.mean(covered)
    print(f"coverage of 95% intervals: {rate:.3f} over {len(covered)}; order recovered in {ordered}/50; "
          f"mean width {np.mean(width):.2f}")
    assert 0.89 <= rate <= 0.99
    assert ordered >= 45
    # more judgements, narrower intervals, exact order
    theta, lo, hi = bootstrap_bradley_terry(simulate(true, 4000, rng), n_boot=400)
    assert list(np.argsort(theta)) == [0, 1, 2, 3] and np.mean(hi - lo) < np.mean(width) / 2.5


def test_wilson_interval_is_the_closed_form():
    for k, n in ((0, 10), (7, 20), (50, 50), (130, 400)):
        p, z = k / n, 1.959963984540054
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert np.allclose(wilson(k, n), (centre - half, centre + half), atol=1e-9)


# -- the study, rated by simulated people -----------------------------------------------------
STRENGTH = {"real": 1.2, "pca": 0.3, "ae": -1.5}  # known preferences of the simulated raters
FOOLED = {"pca": 0.3, "ae": 0.05, "real": 0.2}     # P(judged real) for generated, P(judged generated) for real


def rate(study: Study, rater: str, rng, careless: bool = False, task: str = "pairwise") -> int:
    """Answer until done as a person with the known preferences (careless: always the left / 'real')."""
    sources = {i: s for s, ids in study.items.items() for i in ids}
    n = 0
    while True:
        item = study.next_item(rater, task)
        if item.get("done"):
            return n
        shown = [sources[i] for i in item["images"]]
        if careless:
            choice = item["choices"][0]
        elif task == "pairwise":
            if "noise" in shown:
                choice = "left" if shown[0] == "real" else "right"
            else:
                d = STRENGTH[shown[0]] - STRENGTH[shown[1]]
                choice = "left" if rng.random() < 1 / (1 + np.exp(-d)) else "right"
        else:
            s = shown[0]
            if s == "noise":
                choice = "generated"
            else:
                wrong = rng.random() < FOOLED[s]
                choice = ("generated" if wrong else "real") if s == "real" else ("real" if wrong else "generated")
        assert study.record(rater, item["id"], choice)["ok"]
        n += 1


@pytest.fixture(scope="module")
def rated_study(runs, tmp_path_factory):
    """A study of pca, ae and real images rated by 8 careful simulated raters and one careless one."""
    db = tmp_path_factory.mktemp("judge-study") / "study.sqlite"
    create_study(runs, db, real=True, n=12, goal=150, progress=False)
    study = Study(db, seed=0)
    rng = np.random.default_rng(0)
    for k in range(8):
        assert rate(study, study.new_rater("sim"), rng, task="pairwise" if k < 5 else "realfake") == 150
    rate(study, study.new_rater("careless"), rng, careless=True)
    return study


def test_study_stores_samples_once_behind_opaque_ids(rated_study, runs):
    con = rated_study.con
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    counts = dict(con.execute("SELECT source, COUNT(*) FROM items GROUP BY source"))
    assert counts == {"pca": 12, "ae": 12, "real": 12, "noise": 16}
    ids = [r[0] for r in con.execute("SELECT id FROM items")]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids) and len(set(ids)) == len(ids)
    png = rated_study.image(ids[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    import io

    assert Image.open(io.BytesIO(png)).size == (8, 8)
    # the pca samples are pca's: decoding them gives what the model samples with the study's seed
    import torch
    from genlab.models.base import load

    x = load(runs[0]).sample(12, generator=torch.Generator().manual_seed(0)).clamp(0, 1)
    stored = [np.asarray(Image.open(io.BytesIO(bytes(p)))) for (p,) in
              con.execute("SELECT png FROM items WHERE source = 'pca' ORDER BY idx")]
    assert np.abs(np.stack(stored) / 255 - x[:, 0].numpy()).max() <= 0.5 / 255 + 1e-6


def test_scores_recover_known_preferences_and_exclude_careless_raters(rated_study):
    s = study_scores(rated_study, n_boot=300)
    assert s["raters"] == 9 and s["judgements"] == 9 * 150 and s["careless_raters"] == 1
    checks = s["attention_checks"]
    assert 0.5 * CHECK_RATE * 1350 < checks < 2 * CHECK_RATE * 1350
    pw = {m["name"]: m for m in s["pairwise"]["models"]}
    assert pw["real"]["strength"] > pw["pca"]["strength"] > pw["ae"]["strength"]
    true = np.array([STRENGTH[n] for n in rated_study.sources])
    true -= true.mean()
    for name, t in zip(rated_study.sources, true):  # the bootstrap intervals hold the truth (3 of 3 here)
        assert pw[name]["low"] - 0.15 <= t <= pw[name]["high"] + 0.15, (name, pw[name], t)
    # each strength rests on the judgements that involve it; attention checks and the careless rater never count
    assert sum(m["wins"] for m in pw.values()) == s["pairwise"]["judgements"]
    assert sum(m["judgements"] for m in pw.values()) == 2 * s["pairwise"]["judgements"]
    js = rated_study.judgements()
    careful_pw = [j for j in js if j["task"] == "pairwise" and not j["attention_check"] and not j["careless_rater"]]
    assert s["pairwise"]["judgements"] == len(careful_pw)
    assert s["excluded"] == sum(1 for j in js if j["careless_rater"] and not j["attention_check"]) > 100
    # with the careless rater, the counts grow by their answers
    s2 = study_scores(rated_study, include_careless=True, n_boot=50)
    assert s2["pairwise"]["judgements"] == s["pairwise"]["judgements"] + s["excluded"]
    rf = {m["name"]: m for m in s["realfake"]["models"]}
    for name, p in FOOLED.items():
        assert rf[name]["low"] <= p <= rf[name]["high"] and rf[name]["judgements"] > 20, (name, rf[name])
    assert sum(m["judgements"] for m in rf.values()) == s["realfake"]["judgements"]


def test_scores_and_export_from_the_cli(rated_study, tmp_path, capsys):
    out = tmp_path / "study.csv"
    assert main(["judge", "--db", str(rated_study.path), "--export", str(out), "--scores"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {9 * 150} judgements" in text and "Bradley-Terry" in text and "HYPE" in text
    lines = [ln for ln in text.splitlines() if ln.strip().startswith(("real ", "pca ", "ae "))]
    assert [ln.split()[0] for ln in lines[:3]] == ["real", "pca", "ae"]  # sorted by strength
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 9 * 150 and len({r["pair"] for r in rows}) == len(rows)
    assert sum(r["careless_rater"] == "True" for r in rows) == 150
    checks = [r for r in rows if r["attention_check"] == "True"]
    assert checks and all(r["correct"] in ("True", "False") for r in checks)
    assert all(r["winner"] in (r["left_source"], r["right_source"]) for r in rows if r["task"] == "pairwise")
    assert main(["judge", "--db", str(tmp_path / "none.sqlite"), "--scores"]) == 2
    assert "no such study" in capsys.readouterr().err


def test_report_shows_people_beside_fd(rated_study, runs, tmp_path, capsys):
    page = tmp_path / "page" / "report.html"
    assert main(["report", *map(str, runs), "--out", str(page), "--n", "100", "--nll-seconds", "1", "--quiet",
                 "--judge", str(rated_study.path)]) == 0
    out = capsys.readouterr().out
    results = json.loads((page.parent / "results.json").read_text())
    h = results["human"]
    assert set(h["models"]) == {"pca", "ae", "real"} and h["unmatched"] == []
    fd = {e["name"]: e["metrics"]["fid"] for e in results["families"]}
    agree = h["agreement"]["bradley_terry"]
    # two models: +1 if FD orders them as the simulated people did (pca over ae), else -1
    assert agree["spearman"] == pytest.approx(1.0 if fd["pca"] < fd["ae"] else -1.0) and agree["models"] == ["pca", "ae"]
    assert "people vs FD (bradley terry): Spearman" in out
    html = page.read_text()
    assert '<table id="people">' in html and "Bradley-Terry strength" in html and "ρ = " in html


# -- the JSON API ------------------------------------------------------------------------------
@contextlib.contextmanager
def running(study):
    """The study's app under uvicorn on a free loopback port, in a thread; yields its URL."""
    from genlab.workflows.judge.server import bind, make_server, url_of

    sock = bind("127.0.0.1", 0)
    srv = make_server(study)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"
    try:
        yield url_of(sock)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def client(runs, tmp_path):
    import httpx

    study = create_study(runs, tmp_path / "api.sqlite", real=False, n=4, goal=5, progress=False)
    with running(study) as url, httpx.Client(base_url=url, timeout=20) as c:
        yield c, study


def test_api_accepts_each_served_pair_once_and_refuses_the_rest(client, tmp_path, runs):
    c, study = client
    page = c.get("/")
    assert page.status_code == 200 and "genlab_judge" in page.cookies
    assert "http" not in re.sub(r"http://[^\"' ]*w3\.org[^\"' ]*", "", page.text.split("<script>")[0])  # no CDN
    assert "httponly" in page.headers["set-cookie"].lower() and "samesite=strict" in page.headers["set-cookie"].lower()
    item = c.get("/api/pair").json()
    assert c.get("/api/pair").json()["id"] == item["id"]  # a reload shows the same pair
    assert all(re.fullmatch(r"/img/[0-9a-f]{16}", u) for u in item["images"]) and len(item["images"]) == 2
    img = c.get(item["images"][0])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert c.get("/img/../../etc/passwd").status_code == 404 and c.get("/img/0123456789abcdef").status_code == 404
    post = lambda body, **kw: c.post("/api/judgement", content=body if isinstance(body, bytes) else json.dumps(body),
                                     headers={"content-type": kw.get("ctype", "application/json")})
    assert post(b"{not json").status_code == 400
    assert post({"pair": item["id"], "choice": "left"}, ctype="text/plain").status_code == 415
    assert post({"pair": item["id"]}).status_code == 422
    assert post({"pair": item["id"], "choice": "left", "extra": 1}).status_code == 422
    assert post({"pair": item["id"], "choice": "real"}).status_code == 422  # a realfake answer to a pair
    assert post({"pair": ["x"], "choice": "left"}).status_code == 422
    assert post(b"[1, 2]").status_code == 422
    assert post(b"x" * 10_000).status_code == 413
    assert post({"pair": "forged-id-000", "choice": "left"}).status_code == 404
    ok = post({"pair": item["id"], "choice": "right"})
    assert ok.status_code == 200 and ok.json()["progress"] == {"answered": 1, "goal": 5}
    assert post({"pair": item["id"], "choice": "right"}).status_code == 409  # replay
    assert post({"pair": item["id"], "choice": "left"}).status_code == 409   # changing one's mind is a replay too
    # another rater cannot answer this rater's pair; a rater without a session cannot answer at all
    other = c.get("/api/pair").json()
    jar = dict(c.cookies)
    c.cookies.clear()
    assert post({"pair": other["id"], "choice": "left"}).status_code == 401
    c.cookies.set("genlab_judge", "made-up-session")
    assert post({"pair": other["id"], "choice": "left"}).status_code == 401
    c.cookies.clear()
    c.get("/")
    assert post({"pair": other["id"], "choice": "left"}).status_code == 404
    c.cookies.clear()
    c.cookies.set("genlab_judge", jar["genlab_judge"])
    assert c.get("/api/pair?task=realfake").status_code == 409  # no --real: no real-vs-fake task
    assert c.get("/api/pair?task=nonsense").status_code == 400
    for _ in range(4):
        it = c.get("/api/pair").json()
        assert post({"pair": it["id"], "choice": "left"}).status_code == 200
    done = c.get("/api/pair").json()
    assert done == {"done": True, "progress": {"answered": 5, "goal": 5}}
    assert study.summary()["judgements"] == 5
    assert c.get("/api/study").json()["tasks"] == ["pairwise"]


def test_cli_judge_refuses_without_the_web_extra_and_warns_off_loopback(runs, tmp_path, monkeypatch, capsys):
    import genlab.workflows.judge as judge

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    assert main(["judge", *map(str, runs), "--db", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "genlab[web]" in err and "uvicorn" in err
    assert not (tmp_path / "s.sqlite").exists()  # refused before drawing samples
    monkeypatch.undo()
    served = []
    monkeypatch.setattr(judge, "serve", lambda study, host, port, announce: served.append((host, port)))
    assert main(["judge", *map(str, runs), "--db", str(tmp_path / "s.sqlite"), "--host", "0.0.0.0", "--n", "3",
                 "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "warning: --host 0.0.0.0" in cap.err and served == [("0.0.0.0", 8765)] and "new study" in cap.out
    assert main(["judge", *map(str, runs), "--db", str(tmp_path / "s.sqlite")]) == 0  # same runs: serve it again
    assert "warning" not in capsys.readouterr().err and served[-1] == ("127.0.0.1", 8765)
    assert main(["judge", str(runs[0]), "--db", str(tmp_path / "s.sqlite")]) == 2  # other runs, same db
    assert "holds a study of other runs" in capsys.readouterr().err
    assert main(["judge", str(tmp_path), "--db", str(tmp_path / "t.sqlite")]) == 2
    assert "not a genlab run" in capsys.readouterr().err
    assert main(["judge", str(runs[0]), "--db", str(tmp_path / "t.sqlite")]) == 2
    assert "add --real" in capsys.readouterr().err and not (tmp_path / "t.sqlite").exists()


# -- under load ------------------------------------------------------------------------------------
def test_twenty_concurrent_raters_lose_nothing_and_double_nothing(runs, tmp_path):
    """A real uvicorn server (`genlab judge` in its own process, loopback, any free port); 20 raters on
    threads submit 100 judgements each, and between them try a replay, a malformed body, a forged id and
    an id from another study. Every judgement is stored exactly once; every bad submission is refused."""
    import httpx

    raters, each = 20, 100
    db = tmp_path / "load.sqlite"
    create_study(runs, db, real=True, n=8, goal=each, progress=False)
    foreign = create_study(runs, tmp_path / "other.sqlite", real=False, n=2, goal=1, progress=False)
    foreign_id = foreign.next_item(foreign.new_rater(), "pairwise")["id"]
    proc = subprocess.Popen([sys.executable, "-m", "genlab", "judge", "--db", str(db), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            m = re.search(r"judging page: (http://127\.0\.0\.1:\d+/)", line)
            url = m and m.group(1)
        assert url, "the server did not start"
        latencies, refused, accepted, errors = [], [], [], []
        lock = threading.Lock()

        def rater(k: int):
            try:
                with httpx.Client(base_url=url, timeout=30) as c:
                    c.get("/")
                    mine, lat, bad = [], [], []
                    for i in range(each):
                        task = "realfake" if (k + i) % 3 == 0 else "pairwise"
                        item = c.get("/api/pair", params={"task": task}).json()
                        choice = item["choices"][(k * 7 + i) % 2]
                        t = time.perf_counter()
                        r = c.post("/api/judgement", json={"pair": item["id"], "choice": choice})
                        lat.append(time.perf_counter() - t)
                        assert r.status_code == 200, r.text
                        mine.append(item["id"])
                        if i % 25 == 0:  # the attacks, four times per rater
                            bad.append(c.post("/api/judgement", json={"pair": item["id"], "choice": choice}).status_code)
                            bad.append(c.post("/api/judgement", content=b'{"pair": ',
                                              headers={"content-type": "application/json"}).status_code)
                            bad.append(c.post("/api/judgement", json={"pair": "f" * 16, "choice": "left"}).status_code)
                            bad.append(c.post("/api/judgement", json={"pair": foreign_id, "choice": "left"}).status_code)
                    assert c.get("/api/pair").json()["done"] is True
                with lock:
                    accepted.extend(mine)
                    latencies.extend(lat)
                    refused.extend(bad)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                with lock:
                    errors.append(repr(e))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=rater, args=(k,)) for k in range(raters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        wall = time.perf_counter() - t0
        assert not errors, errors[:3]
        lat = np.array(latencies) * 1000
        print(f"\n{raters} raters, {len(accepted)} judgements in {wall:.1f} s ({len(accepted) / wall:.0f}/s); "
              f"POST /api/judgement latency median {np.median(lat):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
        assert len(accepted) == raters * each and len(set(accepted)) == raters * each
        assert sorted(refused) == sorted([409, 400, 404, 404] * 4 * raters)
        assert wall < 90
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    con = connect(db)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT served) FROM judgements").fetchone() == (raters * each,) * 2
    assert sorted(r[0] for r in con.execute("SELECT served FROM judgements")) == sorted(accepted)
    per_rater = [r[0] for r in con.execute("SELECT COUNT(*) FROM judgements GROUP BY rater")]
    assert per_rater == [each] * raters
    assert con.execute("SELECT COUNT(*) FROM served WHERE answered = 1").fetchone()[0] == raters * each
    assert con.execute("SELECT COUNT(*) FROM served WHERE answered = 0").fetchone()[0] == 0
