"""A study: samples stored once, pairs served to raters, judgements recorded, all in one SQLite file.

    study = create_study(["runs/demo/vae", "runs/demo/gan"], "judge.sqlite", real=True, n=50)
    item = study.next_item(rater, "pairwise")          # what GET /api/pair serves
    study.record(rater, item["id"], "left")            # what POST /api/judgement records
    study.export_csv("study.csv")

Tables (one file, WAL journal, one transaction per answer):

    meta        key -> JSON value: sources, data, n, seed, goal, tasks, subject, created
    items       opaque random id -> source (a run's name, "real" or "noise") and the PNG bytes
    raters      opaque random session token -> created, user agent
    served      opaque random id -> rater, task, the item(s) shown, whether it is an attention check
    judgements  one row per accepted answer; UNIQUE(served), so a pair is answered once

Samples are drawn once, when the study is created, from each run through the model contract
(`models.base.load` and `model.sample(n, generator=seeded)`); real images are test-split images of
the runs' data. An attention check shows a real image against uniform noise (pairwise) or noise
alone (real-vs-fake); its right answer is known, and a rater who fails more than
`CARELESS_FRACTION` of their checks is "careless": their answers are kept, and left out of the
scores unless asked for.
"""

from __future__ import annotations

import csv
import io
import json
import random
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from ...errors import ConfigError, DataError, GenlabError

TASKS = ("pairwise", "realfake")
CHOICES = {"pairwise": ("left", "right"), "realfake": ("real", "generated")}
CHECK_RATE = 0.1          # share of served items that are attention checks
CARELESS_FRACTION = 0.2   # a rater failing more than this share of their checks is flagged
N_NOISE = 16              # noise images stored for attention checks
SCHEMA_VERSION = 1

SUBJECTS = {"digits": "handwritten digit", "mnist": "handwritten digit", "fashion-mnist": "piece of clothing"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, source TEXT NOT NULL, idx INTEGER NOT NULL,
                                  png BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS items_source ON items(source);
CREATE TABLE IF NOT EXISTS raters (id TEXT PRIMARY KEY, created REAL NOT NULL, agent TEXT);
CREATE TABLE IF NOT EXISTS served (id TEXT PRIMARY KEY, rater TEXT NOT NULL REFERENCES raters(id),
                                   task TEXT NOT NULL, left_item TEXT NOT NULL REFERENCES items(id),
                                   right_item TEXT REFERENCES items(id), is_check INTEGER NOT NULL,
                                   served_at REAL NOT NULL, answered INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS served_rater ON served(rater, answered);
CREATE TABLE IF NOT EXISTS judgements (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                       served TEXT NOT NULL UNIQUE REFERENCES served(id),
                                       rater TEXT NOT NULL REFERENCES raters(id), task TEXT NOT NULL,
                                       choice TEXT NOT NULL, created REAL NOT NULL, seconds REAL NOT NULL);
CREATE INDEX IF NOT EXISTS judgements_rater ON judgements(rater);
"""


class Rejected(GenlabError):
    """A submission the study refuses; `status` is the HTTP status the server answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def connect(path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, foreign keys on."""
    con = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash in WAL mode
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("PRAGMA busy_timeout=30000")
    return con


def _png(img) -> bytes:
    """PNG bytes of one image, a [C, H, W] array in [0, 1] (C = 1 or 3)."""
    import numpy as np
    from PIL import Image

    a = np.clip(np.asarray(img, dtype=np.float64), 0, 1)
    a = np.round(a * 255).astype(np.uint8)
    pil = Image.fromarray(a[0], "L") if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0)[..., :3], "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _names(runs: Sequence[Path], families: Sequence[str]) -> list[str]:
    """A run's name on the page and in the scores: its family, or 'family (dir)' when two share one
    (the names `genlab report` uses, so the scores line up with its rows)."""
    return [f if families.count(f) == 1 else f"{f} ({r.name})" for f, r in zip(families, runs)]


def read_runs(runs: Sequence) -> tuple[list[Path], list[dict]]:
    runs = [Path(r) for r in runs]
    if not runs:
        raise ConfigError("give at least one run directory to judge")
    from ...models.base import read_run_config

    cfgs = [read_run_config(r) for r in runs]
    if len({json.dumps(c["data"].get("source"), sort_keys=True) for c in cfgs}) > 1:
        raise ConfigError("these runs were trained on different data: "
                          + ", ".join(f"{r} ({c['data'].get('name')})" for r, c in zip(runs, cfgs)))
    kinds = {c["data"].get("kind") for c in cfgs}
    if kinds != {"image"}:
        raise ConfigError(f"people judge images; these runs model {', '.join(sorted(map(str, kinds)))} data")
    return runs, cfgs


def create_study(runs: Sequence, db, real: bool = False, n: int = 50, seed: int = 0, goal: int = 50,
                 progress: bool = True) -> "Study":
    """Draw `n` samples from each run (and `n` real test images when `real`) into a new study at `db`.

    The study's competitors are the runs (and "real" with `real=True`); real-vs-fake needs
    `real=True`. `goal` is the number of judgements asked of each rater. Samples are drawn with a
    generator seeded by `seed` + the run's position, so the same command draws the same images.
    """
    import torch
    from tqdm.auto import tqdm

    from ...data import dataset_from_spec
    from ...models.base import load

    if n < 2:
        raise ConfigError(f"--n must be at least 2 (samples per model), got {n}")
    if goal < 1:
        raise ConfigError(f"judgements per rater must be at least 1, got {goal}")
    db = Path(db)
    if db.exists():
        raise GenlabError(f"{db} already holds a study; choose another --db (or serve it: genlab judge --db {db})")
    runs, cfgs = read_runs(runs)
    families = [c["family"] for c in cfgs]
    names = _names(runs, families)
    if real and "real" in names:
        raise ConfigError("a run named 'real' clashes with the real images (--real)")
    if len(names) + bool(real) < 2:
        raise ConfigError("one run alone has nothing to be compared with: add --real (or another run)")
    data = dataset_from_spec(cfgs[0]["data"])
    if len(data.test) < 2:
        raise DataError(f"{data.spec.name}: too few test images for real images and attention checks")
    rows: list[tuple[str, str, int, bytes]] = []
    bar = tqdm(list(zip(names, runs)), desc="judge: sampling", unit="model", disable=not progress)
    for i, (name, run) in enumerate(bar):
        bar.set_postfix_str(name)
        model = load(run)
        g = torch.Generator(device=model.device).manual_seed(seed + i)
        y = None
        if model.condition_kind == "tensor":  # paired data: one test condition per sample
            cond = data.conditions("test", "tensor")
            y = cond[torch.arange(n) % len(cond)].to(model.device)
        with torch.no_grad():
            x = model.sample(n, y, generator=g).detach().cpu().float().clamp(0, 1).numpy()
        rows += [(secrets.token_hex(8), name, k, _png(x[k])) for k in range(n)]
    bar.close()
    gen = torch.Generator().manual_seed(seed + 10_000)
    n_real = min(n, len(data.test))
    pick = torch.randperm(len(data.test), generator=gen)[:n_real]
    test = data.test[pick].float().clamp(0, 1).numpy()
    rows += [(secrets.token_hex(8), "real", k, _png(test[k])) for k in range(n_real)]
    noise = torch.rand((N_NOISE, *data.spec.shape), generator=gen).numpy()
    rows += [(secrets.token_hex(8), "noise", k, _png(noise[k])) for k in range(N_NOISE)]
    meta = {"schema": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "data": data.spec.name, "data_spec": cfgs[0]["data"],
            "subject": SUBJECTS.get(data.spec.name, f"{data.spec.name} image"),
            "sources": [{"name": nm, "family": f, "run": str(r.resolve())} for nm, f, r in zip(names, families, runs)],
            "real": bool(real), "n": n, "seed": seed, "goal": goal,
            "tasks": list(TASKS) if real else ["pairwise"]}
    tmp = db.with_name(f".{db.name}.{secrets.token_hex(4)}.tmp")
    db.parent.mkdir(parents=True, exist_ok=True)
    con = connect(tmp)
    try:
        con.executescript(_SCHEMA)
        con.execute("BEGIN")
        con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        tmp.replace(db)  # the study appears whole or not at all
    except BaseException:
        con.close()
        for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            p.unlink(missing_ok=True)
        raise
    for p in (Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    return Study(db)


class Study:
    """An open study: serves items and records answers; safe to share between threads (one SQLite
    connection per thread, every answer in its own IMMEDIATE transaction)."""

    def __init__(self, db, seed: Optional[int] = None):
        """`seed`: make the choice of pairs and checks reproducible (tests); by default it is
        unpredictable (random.SystemRandom). Ids are always unpredictable."""
        self.path = Path(db)
        if not self.path.exists():
            raise GenlabError(f"{self.path}: no such study (create one: genlab judge RUN [RUN ...] --db {self.path})")
        self._local = threading.local()
        try:
            rows = self.con.execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.DatabaseError as e:
            raise GenlabError(f"{self.path}: not a genlab study ({e})") from None
        self.meta = {k: json.loads(v) for k, v in rows}
        if self.meta.get("schema") != SCHEMA_VERSION:
            raise GenlabError(f"{self.path}: not a genlab study (schema {self.meta.get('schema')})")
        self.sources = [s["name"] for s in self.meta["sources"]] + (["real"] if self.meta["real"] else [])
        self.goal = int(self.meta["goal"])
        self.tasks = list(self.meta["tasks"])
        by_source: dict[str, list[str]] = {}
        for item, source in self.con.execute("SELECT id, source FROM items ORDER BY source, idx"):
            by_source.setdefault(source, []).append(item)
        self.items = by_source
        self._rng = random.SystemRandom() if seed is None else random.Random(seed)
        self._pairs = [(s, t) for i, s in enumerate(self.sources) for t in self.sources[i + 1:]]
        self._pair_counts: Optional[dict] = None

    @property
    def con(self) -> sqlite3.Connection:
        c = getattr(self._local, "con", None)
        if c is None:
            c = self._local.con = connect(self.path)
        return c

    # -- raters ------------------------------------------------------------------------------
    def new_rater(self, agent: str = "") -> str:
        rater = secrets.token_urlsafe(18)
        self.con.execute("INSERT INTO raters VALUES (?, ?, ?)", (rater, time.time(), agent[:200]))
        return rater

    def has_rater(self, rater: Optional[str]) -> bool:
        if not rater or len(rater) > 64:
            return False
        return self.con.execute("SELECT 1 FROM raters WHERE id = ?", (rater,)).fetchone() is not None

    def progress(self, rater: str) -> dict:
        done = self.con.execute("SELECT COUNT(*) FROM judgements WHERE rater = ?", (rater,)).fetchone()[0]
        return {"answered": done, "goal": self.goal}

    def image(self, item: str) -> Optional[bytes]:
        row = self.con.execute("SELECT png FROM items WHERE id = ?", (item,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- serving -----------------------------------------------------------------------------
    def next_item(self, rater: str, task: Optional[str] = None) -> dict:
        """The rater's next pair (pairwise) or image (realfake): the one still open if any (a reload
        shows the same), else a new one; {"done": True} once the rater has answered `goal`."""
        task = task or self.tasks[0]
        if task not in TASKS:
            raise Rejected(400, f"unknown task '{task}' (choose from: {', '.join(TASKS)})")
        if task not in self.tasks:
            raise Rejected(409, "this study has no real images, so no real-vs-fake task (create it with --real)")
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            prog = self.progress(rater)
            if prog["answered"] >= self.goal:
                con.execute("COMMIT")
                return {"done": True, "progress": prog}
            row = con.execute("SELECT id, task, left_item, right_item FROM served WHERE rater = ? AND task = ? "
                              "AND answered = 0 ORDER BY served_at DESC LIMIT 1", (rater, task)).fetchone()
            if row is None:
                row = self._serve(rater, task)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        sid, task, left, right = row
        return {"id": sid, "task": task, "images": [i for i in (left, right) if i is not None],
                "choices": list(CHOICES[task]), "progress": prog}

    def _serve(self, rater: str, task: str) -> tuple:
        rng = self._rng
        check = rng.random() < CHECK_RATE
        if task == "pairwise":
            if check:
                a, b = rng.choice(self.items["real"]), rng.choice(self.items["noise"])
            else:
                s, t = self._least_judged_pair(rng)
                a, b = rng.choice(self.items[s]), rng.choice(self.items[t])
            left, right = (a, b) if rng.random() < 0.5 else (b, a)
        else:
            if check:
                left = rng.choice(self.items["noise"])
            else:  # half real, half generated (HYPE's 50/50 mix), models in turn
                src = "real" if rng.random() < 0.5 else rng.choice([s for s in self.sources if s != "real"])
                left = rng.choice(self.items[src])
            right = None
        sid = secrets.token_urlsafe(12)
        self.con.execute("INSERT INTO served (id, rater, task, left_item, right_item, is_check, served_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (sid, rater, task, left, right, int(check), time.time()))
        return sid, task, left, right

    def _least_judged_pair(self, rng) -> tuple[str, str]:
        """Two different competitors, the pair served least often so far (ties at random): every
        pair gets its share of judgements, whatever the number of raters. The counts are read from
        the database once, then kept here (callers hold the write transaction, so they agree)."""
        if self._pair_counts is None:
            counts = {p: 0 for p in self._pairs}
            for a, b, k in self.con.execute(
                    "SELECT la.source, ra.source, COUNT(*) FROM served s JOIN items la ON la.id = s.left_item "
                    "JOIN items ra ON ra.id = s.right_item WHERE s.task = 'pairwise' AND s.is_check = 0 "
                    "GROUP BY la.source, ra.source"):
                key = (a, b) if (a, b) in counts else (b, a)
                if key in counts:
                    counts[key] += k
            self._pair_counts = counts
        if not self._pairs:
            raise Rejected(409, "a pairwise study needs two competitors (two runs, or one run and --real)")
        least = min(self._pair_counts.values())
        pair = rng.choice([p for p, k in self._pair_counts.items() if k == least])
        self._pair_counts[pair] += 1
        return pair

    # -- answers -----------------------------------------------------------------------------
    def record(self, rater: str, served_id, choice) -> dict:
        """Accept one answer, in one transaction: only for an item served to this rater, only once.
        Raises `Rejected` (with the HTTP status) otherwise."""
        if not isinstance(served_id, str) or not isinstance(choice, str) or len(served_id) > 64:
            raise Rejected(422, "expected {\"pair\": \"<id from /api/pair>\", \"choice\": \"...\"}")
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT rater, task, answered, served_at FROM served WHERE id = ?",
                              (served_id,)).fetchone()
            if row is None or row[0] != rater:  # another rater's pair is as unknown as a forged one
                raise Rejected(404, "no such pair was served to you")
            _, task, answered, served_at = row
            if answered:
                raise Rejected(409, "this pair has already been answered")
            if choice not in CHOICES[task]:
                raise Rejected(422, f"choice must be one of: {', '.join(CHOICES[task])}")
            now = time.time()
            con.execute("INSERT INTO judgements (served, rater, task, choice, created, seconds) VALUES (?, ?, ?, ?, ?, ?)",
                        (served_id, rater, task, choice, now, round(now - served_at, 3)))
            con.execute("UPDATE served SET answered = 1 WHERE id = ?", (served_id,))
            prog = self.progress(rater)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return {"ok": True, "progress": prog}

    # -- reading it back ---------------------------------------------------------------------
    def judgements(self) -> list[dict]:
        """Every accepted answer with what was shown: sources, the chosen source, the check's verdict."""
        q = ("SELECT j.id, j.created, j.rater, j.task, j.served, s.left_item, la.source, s.right_item, ra.source, "
             "j.choice, s.is_check, j.seconds FROM judgements j JOIN served s ON s.id = j.served "
             "JOIN items la ON la.id = s.left_item LEFT JOIN items ra ON ra.id = s.right_item ORDER BY j.id")
        out = []
        for (jid, created, rater, task, served, li, ls, ri, rs, choice, check, secs) in self.con.execute(q):
            if task == "pairwise":
                chosen, other = (ls, rs) if choice == "left" else (rs, ls)
                correct = (chosen == "real") if check else None
            else:
                chosen, other = None, None
                correct = (choice == "generated") if check else None
            out.append({"judgement": jid, "created": created, "rater": rater, "task": task, "pair": served,
                        "left_item": li, "left_source": ls, "right_item": ri, "right_source": rs,
                        "choice": choice, "winner": chosen, "loser": other, "attention_check": bool(check),
                        "correct": correct, "seconds": secs})
        careless = self.careless_raters(out)
        for j in out:
            j["careless_rater"] = j["rater"] in careless
        return out

    def careless_raters(self, judgements: Optional[list] = None) -> set[str]:
        """Raters who failed more than CARELESS_FRACTION of the attention checks they answered."""
        js = self.judgements() if judgements is None else judgements
        tally: dict[str, list[int]] = {}
        for j in js:
            if j["attention_check"]:
                t = tally.setdefault(j["rater"], [0, 0])
                t[0] += not j["correct"]
                t[1] += 1
        return {r for r, (bad, total) in tally.items() if bad and bad / total > CARELESS_FRACTION}

    def export_csv(self, path) -> Path:
        """Every judgement, one row each, with what was shown (atomic write)."""
        from ...io import atomic_write_bytes

        cols = ["judgement", "created", "rater", "task", "pair", "left_source", "right_source", "choice", "winner",
                "loser", "attention_check", "correct", "careless_rater", "seconds", "left_item", "right_item"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for j in self.judgements():
            j = dict(j, created=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(j["created"]))
                     + f".{int(j['created'] % 1 * 1000):03d}")
            w.writerow({k: ("" if v is None else v) for k, v in j.items()})
        return atomic_write_bytes(path, buf.getvalue().encode("utf-8"))

    def summary(self) -> dict:
        c = self.con
        return {"raters": c.execute("SELECT COUNT(*) FROM raters").fetchone()[0],
                "judgements": c.execute("SELECT COUNT(*) FROM judgements").fetchone()[0],
                "sources": self.sources, "tasks": self.tasks, "goal": self.goal, "data": self.meta["data"]}

    def close(self):
        c = getattr(self._local, "con", None)
        if c is not None:
            c.close()
            self._local.con = None


def open_or_create(runs: Sequence, db, real: bool = False, n: int = 50, seed: int = 0, goal: int = 50,
                   progress: bool = True) -> tuple["Study", bool]:
    """(study, created): a new study from `runs`, or the one already at `db` when it holds the same runs."""
    db = Path(db)
    if not db.exists():
        if not runs:
            raise ConfigError(f"{db}: no such study; give the run directories to judge (genlab judge RUN ... --db {db})")
        return create_study(runs, db, real=real, n=n, seed=seed, goal=goal, progress=progress), True
    study = Study(db)
    if runs:
        want = sorted(str(Path(r).resolve()) for r in runs)
        have = sorted(s["run"] for s in study.meta["sources"])
        if want != have or bool(real) != study.meta["real"]:
            raise ConfigError(f"{db} holds a study of other runs ({', '.join(study.sources)}); choose another --db "
                              f"for a new study, or omit the runs to serve this one")
    return study, False
