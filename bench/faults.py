"""SIGKILL at random moments: does every killed run resume from an intact checkpoint and end equal?

Each run trains a vae on digits through the real CLI in a fresh interpreter (`genlab train ... --out
DIR`), is killed with SIGKILL at a random moment of a launch (uniform over the time an uninterrupted
run spends after its imports), then relaunched (`genlab resume DIR`, or
`genlab train` again when the kill came before the run directory held a run), `--per-run` kills per run;
the last launch runs to the end. After every kill the bench checks that what is on disk is whole
(config.json parses, the checkpoint loads) and notes where the kill landed; at the end of each run it
compares the final weights and metrics.jsonl with one uninterrupted run. Checkpoint writes are
slowed (`--slow-write`: half the file written, a pause, the rest), and a share of the kills (`--aim`)
waits for such a pause and lands at a random moment inside it: a real write of a few MB takes
milliseconds, so uniform kills alone would rarely find one.

One thread (torch and BLAS) in every launch: the runs are bit-exact on CPU.
    python bench/faults.py                          # 20 kills, 2 per run, a quarter aimed inside a write
    python bench/faults.py --kills 40 --per-run 4 --steps 300 --out bench/results/faults.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SETTINGS = {"checkpoint_every": 20, "log_every": 10, "ema_decay": 0.99, "lr_schedule": "cosine", "warmup_steps": 10,
            "batch_size": 64}


def child(argv: list[str], slow: float) -> int:
    """One launch: genlab's CLI, one thread, checkpoint writes paused half-way for `slow` seconds."""
    import torch

    torch.set_num_threads(1)
    if slow > 0:
        import io

        save = torch.save

        def slow_save(obj, f, *a, **k):
            buf = io.BytesIO()
            save(obj, buf, *a, **k)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            Path(os.environ["FAULTS_IN_WRITE"]).touch()  # the bench may aim a kill at this pause
            time.sleep(slow)
            f.write(data[len(data) // 2:])

        torch.save = slow_save
    from genlab.cli import main

    Path(os.environ["FAULTS_STARTED"]).touch()  # imports done: genlab's own work starts here
    return main(argv)


def launch(argv: list[str], slow: float, log, started: Path) -> subprocess.Popen:
    in_write = started.with_name("in-write")
    started.unlink(missing_ok=True)
    in_write.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "FAULTS_STARTED": str(started), "FAULTS_IN_WRITE": str(in_write)}
    return subprocess.Popen([sys.executable, str(HERE), "--child", str(slow), "--", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=log)


def train_argv(run: Path, steps: int) -> list[str]:
    sets = [x for k, v in SETTINGS.items() for x in ("--set", f"{k}={v}")]
    return ["train", "vae", "--data", "digits", "--steps", str(steps), "--out", str(run), "--quiet", *sets]


def state_after_kill(run: Path) -> dict:
    """What the kill left: where it landed, and whether what is on disk is whole."""
    from genlab.io import TEMP_NAME, load_state
    from genlab.train.trainer import CHECKPOINT

    temps = [p for p in run.rglob("*") if TEMP_NAME.match(p.name)] if run.exists() else []
    out = {"temps": [str(p.relative_to(run)) for p in temps]}
    if not (run / "config.json").exists():
        out["landed"] = "before the run directory held a run"
    elif any(p.name.startswith(".last.pt.") for p in temps):
        out["landed"] = "inside a checkpoint write"
    elif temps:
        out["landed"] = "inside another file's write"
    elif (run / "model.safetensors").exists():
        out["landed"] = "while writing the final files"
    elif not (run / CHECKPOINT).exists():
        out["landed"] = "before the first checkpoint"
    else:
        out["landed"] = "between checkpoints"
    intact = True
    try:
        if (run / "config.json").exists():
            json.loads((run / "config.json").read_text())
        if (run / CHECKPOINT).exists():
            out["checkpoint_step"] = int(load_state(run / CHECKPOINT)["step"])
    except Exception as e:  # noqa: BLE001 - a broken file is the finding
        intact, out["error"] = False, f"{type(e).__name__}: {e}"
    out["intact"] = intact
    return out


def rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def compare(run: Path, ref: Path) -> dict:
    import torch

    from genlab.io import load_weights

    a, b = load_weights(run / "model.safetensors"), load_weights(ref / "model.safetensors")
    steps = [r["step"] for r in rows(run)]
    return {"weights_equal": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
            "duplicate_rows": len(steps) - len(set(steps)),
            "metrics_equal": [(r["step"], r["loss"]) for r in rows(run)] == [(r["step"], r["loss"]) for r in rows(ref)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--per-run", type=int, default=2, help="kills before a run may finish")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--slow-write", type=float, default=0.3, help="seconds each checkpoint write pauses half-way")
    ap.add_argument("--aim", type=float, default=0.25,
                    help="share of kills aimed inside a checkpoint write (at a random moment of its pause)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/faults.json")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="genlab-faults-"))
    log = open(work / "stderr.txt", "ab")
    t_start, cpu0 = time.time(), os.times()
    record = {"bench": "faults", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
              "settings": {"family": "vae", "data": "digits", "steps": a.steps, **SETTINGS, "slow_write": a.slow_write},
              "kills": [], "runs": []}

    ref, started = work / "reference", work / "started"
    p = launch(train_argv(ref, a.steps), a.slow_write, log, started)
    while p.poll() is None and not started.exists():
        time.sleep(0.002)
    t0 = time.time()
    p.wait()
    span = time.time() - t0  # genlab's own work: after the imports, to the exit
    assert p.returncode == 0, (work / "stderr.txt").read_text()[-3000:]
    record["reference_work_seconds"] = round(span, 2)
    print(f"uninterrupted run: {span:.1f} s wall after the imports", flush=True)

    kills, r = 0, 0
    while kills < a.kills:
        run = work / f"run{r}"
        n, finished = min(a.per_run, a.kills - kills), False
        for k in range(n):
            argv = ["resume", str(run), "--quiet"] if (run / "config.json").exists() else train_argv(run, a.steps)
            p = launch(argv, a.slow_write, log, started)
            aimed = rng.random() < a.aim
            if aimed:  # inside a checkpoint write: wait for one to pause half-way, kill within the pause
                at = rng.uniform(0.0, 0.8 * a.slow_write)
                while p.poll() is None and not started.with_name("in-write").exists():
                    time.sleep(0.002)
            else:  # any moment of genlab's work: data, training, writes, the final files
                at = rng.uniform(0.0, span)
                while p.poll() is None and not started.exists():
                    time.sleep(0.002)
            t0 = time.time()
            while p.poll() is None and time.time() - t0 < at:
                time.sleep(0.002)
            finished = p.poll() is not None
            if not finished:
                p.send_signal(signal.SIGKILL)
            p.wait()
            entry = {"run": r, "launch": argv[0], "aimed_at_a_write": aimed, "at_seconds": round(at, 2),
                     **({"finished_before_the_kill": True, "returncode": p.returncode} if finished else
                        state_after_kill(run))}
            record["kills"].append(entry)
            kills += not finished
            print(f"run {r} kill {k}: {argv[0]:6s} at {at:5.2f} s{' into a write' if aimed else ''} -> "
                  + ("finished first" if finished else
                     f"{entry['landed']}; checkpoint step {entry.get('checkpoint_step', '-')}; "
                     + ("intact" if entry["intact"] else f"BROKEN ({entry['error']})")), flush=True)
            if finished:
                break
        if not finished:
            argv = ["resume", str(run), "--quiet"] if (run / "config.json").exists() else train_argv(run, a.steps)
            p = launch(argv, 0.0, log, started)
            p.wait()
        done = {"run": r, "final_returncode": p.returncode}
        if p.returncode == 0:
            done.update(compare(run, ref))
        record["runs"].append(done)
        print(f"run {r}: resumed to the end (exit {p.returncode}); "
              + (f"weights equal: {done['weights_equal']}, metrics equal: {done['metrics_equal']}, "
                 f"duplicate rows: {done['duplicate_rows']}" if p.returncode == 0 else "FAILED"), flush=True)
        r += 1

    real = [k for k in record["kills"] if not k.get("finished_before_the_kill")]
    landed = {}
    for k in real:
        landed[k["landed"]] = landed.get(k["landed"], 0) + 1
    cpu1 = os.times()
    summary = {"kills": len(real), "intact_after_kill": sum(k["intact"] for k in real), "landed": landed,
               "runs": len(record["runs"]),
               "resumed_to_the_end": sum(d["final_returncode"] == 0 for d in record["runs"]),
               "matched": sum(bool(d.get("weights_equal")) and bool(d.get("metrics_equal")) for d in record["runs"]),
               "duplicate_rows": sum(d.get("duplicate_rows", 0) for d in record["runs"]),
               "wall_seconds": round(time.time() - t_start, 1),
               "cpu_seconds_children": round(cpu1.children_user + cpu1.children_system
                                             - cpu0.children_user - cpu0.children_system, 1)}
    record["summary"], record["load_average_at_end"] = summary, os.getloadavg()
    print(f"\n{summary['kills']} SIGKILLs: {summary['intact_after_kill']} left an intact run "
          f"({', '.join(f'{v} {k}' for k, v in landed.items())}); {summary['resumed_to_the_end']}/{summary['runs']} "
          f"runs resumed to the end, {summary['matched']}/{summary['runs']} equal to the uninterrupted run "
          f"(weights and metrics), {summary['duplicate_rows']} duplicated metrics rows")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    log.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[sys.argv.index("--") + 1:], float(sys.argv[2])))
    main()
