"""Faults: SIGKILL at any moment (inside a checkpoint write too), Ctrl-C and SIGTERM, two writers of one
run directory, a full disk, the umask, and metrics.jsonl after a resume.

The killed and interrupted runs are forked children (`multiprocessing` "fork": a real process that a
real SIGKILL ends, without paying for a fresh interpreter and torch import each time). Every run is a
small vae on the 2-D `moons` set, bit-exact on one CPU thread, so "resumed = uninterrupted" is an
equality of weights.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

import genlab
import genlab.io as gio
from genlab.cli import main as cli_main
from genlab.errors import DiskFull, GenlabError, TrainingInterrupted
from genlab.io import DirLock, load_state, load_weights
from genlab.train import Callback
from conftest import crash_after
from genlab.train.trainer import CHECKPOINT

FORK = multiprocessing.get_context("fork")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals, fork and flock")

STEPS = 120
NET = dict(hidden=(16, 16), latent_dim=2)
TRAIN = dict(batch_size=32, checkpoint_every=10, log_every=5, ema_decay=0.9, lr_schedule="cosine", warmup_steps=5)
CLI_SETTINGS = ["--set", "hidden=[16,16]", "--set", "latent_dim=2", "--set", "batch_size=32", "--set",
                "checkpoint_every=10", "--set", "log_every=5", "--set", "ema_decay=0.9", "--set",
                "lr_schedule=cosine", "--set", "warmup_steps=5"]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(rows):
    return [(r["step"], r["loss"]) for r in rows]


def _temps(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if gio.TEMP_NAME.match(p.name)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run the killed ones must end equal to."""
    out = tmp_path_factory.mktemp("ref") / "run"
    genlab.train("vae", "moons", out, steps=STEPS, progress=False, **NET, **TRAIN)
    return out


def _cli_child(argv, stderr_path, in_write=None, slow=0.0, cwd=None, skip=0):
    """Runs `genlab ARGV` in a forked child; with `slow`, each checkpoint write after the first `skip`
    stops half-way for `slow` seconds (the first half on disk) and sets `in_write`: a wide window to be
    killed in."""
    code = 1
    try:
        # one thread: a forked child must not use an OpenMP pool its parent (a pytest worker that ran
        # other tests with 2 threads) created, which is not fork-safe (the child hangs on its lock)
        os.environ["GENLAB_THREADS"] = "1"
        torch.set_num_threads(1)
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        if cwd:
            os.chdir(cwd)
        if slow:
            import io as _io

            save, seen = torch.save, [0]

            def slow_save(obj, f, *a, **k):
                seen[0] += 1
                if seen[0] <= skip:
                    return save(obj, f, *a, **k)
                buf = _io.BytesIO()
                save(obj, buf, *a, **k)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                if in_write is not None:
                    in_write.set()
                time.sleep(slow)
                f.write(data[len(data) // 2:])

            torch.save = slow_save
        code = cli_main(argv)
    except BaseException:  # noqa: BLE001 - the child must never return into pytest
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


@pytest.fixture(autouse=True)
def _no_child_left():
    """Whatever a test leaves running is killed: a hung child must never outlive its test (it would hold
    the worker's output pipe open)."""
    yield
    for p in multiprocessing.active_children():
        p.kill()
        p.join(5)


def _launch(argv, log, **kw):  # noqa: D401 - kw: _cli_child's
    p = FORK.Process(target=_cli_child, args=(argv, str(log)), kwargs=kw)
    p.start()
    return p


def _wait_for(cond, timeout=60.0, proc=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        if proc is not None and not proc.is_alive():
            return False
        time.sleep(0.005)
    raise AssertionError("timed out")


def _last_step(run: Path) -> int:
    try:
        rows = (run / "metrics.jsonl").read_text().splitlines()
        return json.loads(rows[-1])["step"] if rows else 0
    except (OSError, ValueError, IndexError):
        return 0


def _sigkill(p):
    if p.is_alive():
        os.kill(p.pid, signal.SIGKILL)
    p.join(30)


def test_sigkill_at_random_moments_resumes_intact_and_ends_equal(reference, tmp_path):
    """Killed 4 times (before the first checkpoint, inside a checkpoint write, twice at a random step
    and moment), resumed each time; the run ends with the uninterrupted run's weights, its checkpoint
    always loads, and metrics.jsonl holds each step once, the reference's rows exactly."""
    rng = random.Random(1234)
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    train = ["train", "vae", "--data", "moons", "--steps", str(STEPS), "--out", str(run), "--quiet", *CLI_SETTINGS]
    resume = ["resume", str(run), "--quiet"]
    kills = ["early", "in-write", "random", "random"]
    killed_in_write = False
    for i, when in enumerate(kills):
        in_write = FORK.Event()
        argv = train if not (run / "config.json").exists() else resume
        p = _launch(argv, log, in_write=in_write, slow=0.3 if when == "in-write" else 0.05)
        if when == "early":  # the run exists, its first checkpoint does not: resume starts over from step 0
            _wait_for(lambda: (run / "config.json").exists(), proc=p)
            time.sleep(rng.uniform(0, 0.05))
        elif when == "in-write":
            assert in_write.wait(60), log.read_text()
            time.sleep(rng.uniform(0.01, 0.15))  # inside the 0.3 s the write stays half-done
        else:
            target = rng.randrange(5, STEPS)
            _wait_for(lambda: _last_step(run) >= target or not p.is_alive(), proc=p)
            time.sleep(rng.uniform(0, 0.15))
        alive = p.is_alive()
        _sigkill(p)
        assert alive, f"the run ended before kill {i} ({when}): {log.read_text()[-2000:]}"
        assert p.exitcode == -signal.SIGKILL
        assert json.loads((run / "config.json").read_text())["family"] == "vae"
        if (run / CHECKPOINT).exists():  # whatever the moment, the checkpoint on disk is whole
            state = load_state(run / CHECKPOINT)
            assert state["step"] % 10 == 0
        if when == "in-write":
            killed_in_write = bool(_temps(run))  # the half-written file, beside the intact checkpoint
    assert killed_in_write
    p = _launch(resume, log)
    p.join(120)
    assert p.exitcode == 0, log.read_text()[-3000:]
    assert not _temps(run) and not (run / DirLock.NAME).exists()
    a, b = load_weights(run / "model.safetensors"), load_weights(reference / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = _rows(run)
    assert len({r["step"] for r in rows}) == len(rows)  # no step twice
    assert _losses(rows) == _losses(_rows(reference))


def test_killed_before_the_first_checkpoint_resumes_from_step_0(reference, tmp_path):
    """No checkpoint yet: `resume` rebuilds the model from the run's seed and trains it from step 0."""
    run, log = tmp_path / "run", tmp_path / "stderr.txt"

    def child():  # killed as it starts its first checkpoint (step 0): config.json is all there is
        try:
            sys.modules["genlab.train.trainer"].save_state = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
            genlab.train("vae", "moons", run, steps=STEPS, progress=False, **NET, **TRAIN)
        finally:
            os._exit(1)

    p = FORK.Process(target=child)
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert sorted(x.name for x in run.iterdir()) == [".lock", "config.json"]
    with pytest.raises(GenlabError, match=r"already holds a run \(vae\); resume it"):
        genlab.train("vae", "moons", run, steps=STEPS, progress=False, **NET, **TRAIN)
    genlab.resume(run, progress=False)
    a, b = load_weights(run / "model.safetensors"), load_weights(reference / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(_rows(run)) == _losses(_rows(reference))
    del log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_a_checkpoint_at_the_current_step(sig, tmp_path):
    """No periodic checkpoint (checkpoint_every=0): the one on disk after the signal is the current step's;
    the exit code is 128+signal and the message names the time-stamped run directory to resume."""
    log = tmp_path / "stderr.txt"
    argv = ["train", "vae", "--data", "moons", "--steps", "100000", "--quiet", "--set", "checkpoint_every=0",
            "--set", "log_every=5", "--set", "hidden=[16,16]", "--set", "batch_size=32"]
    p = _launch(argv, log, cwd=str(tmp_path))
    runs = tmp_path / "runs"
    _wait_for(lambda: runs.exists() and any(_last_step(r) >= 10 for r in runs.iterdir()), proc=p)
    run = next(runs.iterdir())
    os.kill(p.pid, sig)
    p.join(60)
    err = log.read_text()
    assert p.exitcode == 128 + sig, err
    name = signal.Signals(sig).name
    assert f"genlab resume {Path('runs') / run.name}`" in err and f"genlab: {name}: stopped at step" in err
    assert "Traceback" not in err
    step = load_state(run / CHECKPOINT)["step"]
    assert step >= 10 and _rows(run)[-1]["step"] == step  # the window up to the signal is logged
    assert not (run / DirLock.NAME).exists()
    r = genlab.resume(run, steps=3, progress=False)
    assert r.history[-1]["step"] == step + 3
    steps = [row["step"] for row in _rows(run)]
    assert steps[-1] == step + 3 and steps == sorted(set(steps))


def test_sigint_twice_stops_at_once(tmp_path):
    """A second Ctrl-C does not wait for the step: here the checkpoint write the first one asked for."""
    log = tmp_path / "stderr.txt"
    run = tmp_path / "run"
    argv = ["train", "vae", "--data", "moons", "--steps", "100000", "--quiet", "--out", str(run), "--set",
            "checkpoint_every=0", "--set", "hidden=[16,16]"]
    in_write = FORK.Event()
    p = _launch(argv, log, in_write=in_write, slow=30.0, skip=1)  # the step-0 checkpoint is written at once
    _wait_for(lambda: _last_step(run) >= 25, proc=p)
    os.kill(p.pid, signal.SIGINT)
    assert in_write.wait(60)
    os.kill(p.pid, signal.SIGINT)
    p.join(20)
    assert p.exitcode == 130, log.read_text()
    assert load_state(run / CHECKPOINT)["step"] == 0 and not _temps(run)  # the half-written file was removed
    assert f"SIGINT: stopped; resume from its last checkpoint with `genlab resume {run}`" in log.read_text()


def _contender(family, run, barrier, results):
    code = 1
    try:
        # the figures (0.5 s of matplotlib) come last, from the same process under the same lock: not drawn here
        sys.modules["genlab.train.run"].write_figures = lambda run: {}
        barrier.wait(30)
        genlab.train(family, "moons", run, steps=12, progress=False, log_every=1, checkpoint_every=4, hidden=(8,),
                     batch_size=32)
        results.put((family, "ok"))
        code = 0
    except GenlabError as e:
        results.put((family, str(e)))
    except BaseException as e:  # noqa: BLE001
        results.put((family, f"crash {type(e).__name__}: {e}"))
    finally:
        os._exit(code)


def test_two_writers_released_together_one_wins_the_other_is_refused(tmp_path):
    """20 trials: an ae and a vae released by a barrier onto one --out. Exactly one trains; the other
    is refused with a clear message; the winner's files are all its own (weights equal a lone run's)."""
    lone = {f: load_weights(genlab.train(f, "moons", tmp_path / f"lone-{f}", steps=12, progress=False, log_every=1,
                                         checkpoint_every=4, hidden=(8,), batch_size=32).path / "model.safetensors")
            for f in ("ae", "vae")}
    refusals = set()
    for trial in range(20):
        run = tmp_path / f"t{trial}"
        barrier, results = FORK.Barrier(2), FORK.SimpleQueue()
        procs = [FORK.Process(target=_contender, args=(f, run, barrier, results)) for f in ("ae", "vae")]
        for p in procs:
            p.start()
        outcome = dict(results.get() for _ in procs)
        for p in procs:
            p.join(30)
        winners = [f for f, r in outcome.items() if r == "ok"]
        assert len(winners) == 1, outcome
        (winner,), (loser,) = winners, [f for f in outcome if f not in winners]
        msg = outcome[loser]
        assert ("is in use by another genlab process (pid " in msg or "already holds a run of another family" in msg), msg
        refusals.add("lock" if "in use" in msg else "exists")
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["family"] == winner
        rows = _rows(run)
        assert [r["step"] for r in rows] == list(range(1, 13))
        assert all(("kl" in r) == (winner == "vae") for r in rows)  # no row of the loser
        w = load_weights(run / "model.safetensors")
        assert w.keys() == lone[winner].keys() and all(torch.equal(w[k], lone[winner][k]) for k in w)
        assert not (run / DirLock.NAME).exists() and not _temps(run)
    assert "lock" in refusals  # the race was real: the loser met a live lock, not a finished run


def _hold_lock(run, ready, release):
    try:
        DirLock(run).acquire()
        ready.set()
        release.wait(60)
    finally:
        os._exit(0)


def _lock_and_die(run):
    DirLock(run).acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def test_lock_refuses_cli_and_api_while_held_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    genlab.train("vae", "moons", run, steps=4, progress=False, checkpoint_every=2, hidden=(8,))
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_lock, args=(run, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(GenlabError, match=rf"in use by another genlab process \(pid {holder.pid} on "):
            genlab.resume(run, steps=2, progress=False)
        assert cli_main(["resume", str(run), "--steps", "2", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"genlab: error: {run} is in use by another genlab process")
        assert cli_main(["train", "ae", "--data", "moons", "--out", str(run), "--steps", "2", "--quiet"]) == 2
        assert "in use by another genlab process" in capsys.readouterr().err
    finally:
        release.set()
        holder.join(30)
    assert load_state(run / CHECKPOINT)["step"] == 4  # nothing was written by the refused calls
    dead = FORK.Process(target=_lock_and_die, args=(run,))
    dead.start()
    dead.join(30)
    assert dead.exitcode == -signal.SIGKILL and f"pid {dead.pid} " in (run / DirLock.NAME).read_text()
    r = genlab.resume(run, steps=2, progress=False)  # the dead process's lock does not block
    assert r.history[-1]["step"] == 6 and not (run / DirLock.NAME).exists()


def test_out_must_be_new_empty_or_the_same_run(tmp_path, capsys):
    genlab.train("pca", "moons", tmp_path / "pca", progress=False)
    assert cli_main(["train", "vae", "--data", "moons", "--out", str(tmp_path / "pca"), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run of another family (pca, not vae)" in err and err.count("\n") == 1
    assert json.loads((tmp_path / "pca" / "config.json").read_text())["family"] == "pca"
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    (mine / ".config.json.abcd1234.tmp").write_bytes(b"not ours to delete")  # a name like our temporary files
    with pytest.raises(GenlabError, match=r"photos is not empty and holds no genlab run \(holiday.jpg\)"):
        genlab.train("vae", "moons", mine, steps=2, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == [".config.json.abcd1234.tmp", "holiday.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / DirLock.NAME).write_text("pid 1 on elsewhere since long ago\n")  # a dead process's lock
    (empty / ".config.json.abcd1234.tmp").write_text("{")  # and its unfinished write
    genlab.train("vae", "moons", empty, steps=2, progress=False, hidden=(8,))
    assert {p.name for p in empty.iterdir()} >= {"checkpoint", "config.json", "metrics.jsonl", "model.safetensors"}
    assert not _temps(empty)


def test_a_train_that_fails_before_writing_leaves_no_directory(tmp_path, monkeypatch):
    run_module = sys.modules["genlab.train.run"]

    def fail(*a, **k):
        raise DiskFull("cannot write config.json: No space left on device", errno.ENOSPC)

    monkeypatch.setattr(run_module, "atomic_write_json", fail)
    with pytest.raises(DiskFull):
        genlab.train("vae", "moons", tmp_path / "new" / "run", steps=2, progress=False)
    assert not (tmp_path / "new" / "run").exists()  # the directory it made is gone; the parent stays
    (tmp_path / "kept").mkdir()
    with pytest.raises(DiskFull):
        genlab.train("vae", "moons", tmp_path / "kept", steps=2, progress=False)
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())  # the user's, kept


def test_metrics_after_a_resume_hold_each_step_once(reference, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match=f"resume from its last checkpoint with `genlab resume {run}`"):
        genlab.train("vae", "moons", run, steps=STEPS, progress=False, callbacks=[crash_after(38)], **NET, **TRAIN)
    assert load_state(run / CHECKPOINT)["step"] == 30 and _last_step(run) == 35
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "epo')  # a row the kill cut short
    genlab.resume(run, progress=False)
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(5, STEPS + 1, 5))
    assert _losses(rows) == _losses(_rows(reference))


def test_files_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        gio.atomic_write_json(tmp_path / "a.json", {"x": 1})
        gio.save_weights({"w": torch.ones(3)}, tmp_path / "w.safetensors")
        gio.save_state({"w": torch.ones(3)}, tmp_path / "s.pt")
        run = genlab.train("vae", "moons", tmp_path / "run", steps=2, progress=False, hidden=(8,)).path
        os.umask(0o002)
        gio.atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert [mode(tmp_path / n) for n in ("a.json", "w.safetensors", "s.pt", "b.bin")] == [0o640] * 3 + [0o664]
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) >= 5 and {mode(p) for p in files} == {0o640}, {p.name: oct(mode(p)) for p in files}
    assert mode(run) == mode(run / "checkpoint") == 0o750


class FillDisk(Callback):
    """From step `at` on, every checkpoint write meets a full disk half-way through."""

    def __init__(self, at, monkeypatch):
        self.at, self.mp = at, monkeypatch

    def on_step_end(self, trainer):
        if trainer.step != self.at:
            return
        write = gio._File._write

        def full(f, data):
            if f.path.name.startswith(".last.pt."):
                write(f, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return write(f, data)

        self.mp.setattr(gio._File, "_write", full)


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(reference, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    with pytest.raises(DiskFull) as e:
        genlab.train("vae", "moons", run, steps=STEPS, progress=False, callbacks=[FillDisk(25, monkeypatch)],
                     **NET, **TRAIN)
    msg = str(e.value)
    assert msg.startswith(f"cannot write {run / CHECKPOINT}: No space left on device")
    assert f"the checkpoint of step 20 is intact; free some space and resume with `genlab resume {run}`" in msg
    assert "\n" not in msg and load_state(run / CHECKPOINT)["step"] == 20 and not _temps(run)
    monkeypatch.undo()
    genlab.resume(run, progress=False)  # once there is room, the run ends as if nothing happened
    a, b = load_weights(run / "model.safetensors"), load_weights(reference / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the CLI: one line, exit 2
    monkeypatch.setattr(gio._File, "_write", lambda f, d: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    assert cli_main(["train", "vae", "--data", "moons", "--out", str(tmp_path / "cli"), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genlab: error: cannot write") and "No space" in err and err.count("\n") == 1


def _limited(run, q):
    """A real kernel refusal: the file size limit drops below a checkpoint's size after step 15."""
    code = 1
    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

        class Limit(Callback):
            def on_step_end(self, trainer):
                if trainer.step == 15:
                    size = (run / CHECKPOINT).stat().st_size
                    resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

        genlab.train("vae", "moons", run, steps=40, progress=False, callbacks=[Limit()], **NET, **TRAIN)
        q.put("trained")
    except GenlabError as e:
        q.put(f"{type(e).__name__}: {e}")
    except BaseException as e:  # noqa: BLE001
        q.put(f"crash {type(e).__name__}: {e}")
    finally:
        os._exit(code)


def test_file_size_limit_from_the_kernel_keeps_the_previous_checkpoint(tmp_path):
    run, q = tmp_path / "run", FORK.SimpleQueue()
    p = FORK.Process(target=_limited, args=(run, q))
    p.start()
    msg = q.get()
    p.join(30)
    assert msg.startswith(f"DiskFull: cannot write {run / CHECKPOINT}: File too large"), msg
    assert "the checkpoint of step 10 is intact" in msg
    assert load_state(run / CHECKPOINT)["step"] == 10 and not _temps(run)


def _default_dir_contender(cwd, barrier, results):
    code = 1
    try:
        os.chdir(cwd)
        sys.modules["genlab.train.run"].write_figures = lambda run: {}
        barrier.wait(30)
        run = genlab.train("vae", "moons", steps=4, progress=False, hidden=(8,), log_every=1)
        results.put(str(run.path))
        code = 0
    except BaseException as e:  # noqa: BLE001
        results.put(f"failed {type(e).__name__}: {e}")
    finally:
        os._exit(code)


def test_two_runs_started_together_without_out_get_two_directories(tmp_path):
    barrier, results = FORK.Barrier(2), FORK.SimpleQueue()
    procs = [FORK.Process(target=_default_dir_contender, args=(tmp_path, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    paths = {results.get() for _ in procs}
    for p in procs:
        p.join(30)
    assert len(paths) == 2 and all(p.startswith("runs/vae-moons-") for p in paths), paths
    for p in paths:
        assert [r["step"] for r in _rows(tmp_path / p)] == [1, 2, 3, 4]


def _group_leader(argv, log):
    os.setpgrp()  # its own process group, as a terminal's foreground job: Ctrl-C reaches it and its workers
    _cli_child(argv, log)


def test_ctrl_c_in_a_terminal_reaches_the_dataloader_workers_too(tmp_path):
    """Streamed batches come from DataLoader worker processes, which a terminal's Ctrl-C reaches as well:
    they ignore it, the loop finishes its step, checkpoints, stops them and exits 130."""
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    argv = ["train", "vae", "--data", "moons", "--steps", "100000", "--out", str(run), "--quiet", "--stream",
            "--set", "workers=1", "--set", "checkpoint_every=0", "--set", "log_every=5", "--set", "hidden=[16]"]
    p = FORK.Process(target=_group_leader, args=(argv, str(log)))
    p.start()
    _wait_for(lambda: _last_step(run) >= 10, proc=p)
    os.killpg(p.pid, signal.SIGINT)
    p.join(60)
    err = log.read_text()
    assert p.exitcode == 130 and "Traceback" not in err, err
    assert err.count("saving a checkpoint after this step") == 1  # said once, by the training process
    step = load_state(run / CHECKPOINT)["step"]
    assert step >= 10 and f"stopped at step {step}, checkpoint saved; resume with `genlab resume {run}`" in err
