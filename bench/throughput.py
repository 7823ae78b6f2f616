"""Training throughput: steps per CPU-second of every family's genlab training step, sampling
throughput (samples per CPU-second; network calls and CPU-ms per call for iterative samplers), and
genlab against a peer library on the same network, batch and data where the peer is installed.

    python bench/throughput.py --quick            # a few steps each: a smoke run, not a result
    python bench/throughput.py --steps 200        # the protocol: 1 thread, quiet machine
    python bench/throughput.py --no-peers --families none --mfu --epoch-cost --memory --ddp   # costs only

One thread (torch.set_num_threads(1)), time counted as process CPU time by the Trainer
(`clock=cpu`, logging and callbacks excluded), the same seed for both sides; each side first
runs `warmup` steps that are not counted. Peers (each skipped, with a line saying so, when not installed):
zuko MAF and NSF vs genlab maf (affine, spline) on the 64-d digits vectors; pythae's VAE vs
genlab vae (the IWAE-paper MLP on MNIST, from bench/vae_mnist.py); diffusers' UNet2DModel +
DDPMScheduler vs genlab ddpm (bench/diffusion.py's configuration and loops); torchcfm vs genlab fm
(the same UNet, bench/diffusion_fm.py). Ratios > 1: genlab trains more steps per CPU-second.
Prints one table and the ratios, and writes bench/results/throughput.json (or --out).
--mfu, --epoch-cost, --memory and --ddp add the costs of bench/costs.py (model-FLOP utilisation at
batch 512 against the measured matmul peak, seconds per epoch at three data sizes, peak memory, and
2 processes x 1 thread against 1 x 2 for the UNet; the last needs both cores to itself).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

import genlab

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the side-by-side benchmarks beside this file
from genlab.data.spec import DataSpec, Dataset
from genlab.models.base import hyperparameters

RESULTS = Path(__file__).resolve().parent / "results"

#: family -> small settings that train on digits (8x8) in milliseconds per step
FAMILIES = {
    "ae": {}, "vae": {}, "gan": {}, "realnvp": {}, "maf": {},
    "pixelcnn": {"channels": 16, "n_layers": 3},
    "ddpm": {"base": 16, "mults": (1, 2), "attention": False},
    "fm": {"base": 16, "mults": (1, 2), "attention": False},
}


def genlab_rate(family: str, data, steps: int, warmup: int, batch: int, model_out: list | None = None,
                **hp) -> float:
    """Steps per CPU-second of genlab's own loop (the Trainer's CPU clock over `steps` steps)."""
    kw = dict(save=False, progress=False, batch_size=batch, clock="cpu", log_every=10**9, checkpoint_every=0)
    genlab.train(family, data, steps=warmup, **kw, **hp)
    run = genlab.train(family, data, steps=steps, **kw, **hp)
    if model_out is not None:
        model_out.append(run.model)
    return steps / max(run.history[-1]["time"], 1e-9)


@torch.no_grad()
def sampling_rate(model, n: int = 64) -> dict:
    """Samples per CPU-second of `model.sample(n)` with its default sampler, and the network
    evaluations it made (calls of the model's busiest direct child module) and CPU-ms per call."""
    counts = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
             for name, m in model.named_children()]
    model.sample(2)  # warm-up
    counts.clear()
    t0 = time.process_time()
    model.sample(n, generator=torch.Generator().manual_seed(0))
    seconds = time.process_time() - t0
    for h in hooks:
        h.remove()
    nfe = max(counts.values(), default=0)
    return {"samples_per_s": n / max(seconds, 1e-9), "network_calls": nfe,
            "ms_per_call": 1e3 * seconds / nfe if nfe else None}


def vector_digits() -> Dataset:
    ds = genlab.load_dataset("digits")
    spec = DataSpec("vector", (64,), name="digits-vectors")
    return Dataset(ds.train.flatten(1), ds.test.flatten(1), spec)


def zuko_rate(kind: str, data: Dataset, steps: int, warmup: int, batch: int, hidden, transforms: int) -> float:
    """zuko's flow trained the way its README does: Adam on -log_prob, same batches, same data scale."""
    import zuko

    torch.manual_seed(0)
    cls = zuko.flows.NSF if kind == "nsf" else zuko.flows.MAF
    flow = cls(features=data.spec.dim, context=0, transforms=transforms, hidden_features=tuple(hidden))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    x = data.train
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    g = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(len(x), (batch,), generator=g)
        loss = -flow().log_prob(x[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.process_time()
    for _ in range(steps):
        step()
    return steps / max(time.process_time() - t0, 1e-9)


PEERS = [  # (genlab family, genlab settings, peer name, peer module, rate function, its settings)
    ("maf", {"n_layers": 5, "hidden": (128, 128)}, "zuko MAF", "zuko", zuko_rate,
     {"kind": "maf", "hidden": (128, 128), "transforms": 5}),
    ("maf", {"n_layers": 5, "hidden": (128, 128), "transform": "spline"}, "zuko NSF", "zuko", zuko_rate,
     {"kind": "nsf", "hidden": (128, 128), "transforms": 5}),
]


#: genlab settings for its side of the diffusers / torchcfm pairs (--channels-last adds channels_last=true)
LOOP_RECIPE: dict = {}


def loop_pair(module: str, ours: str, theirs: str, minutes: float) -> tuple[float, float]:
    """Steps per second of the two training functions of a side-by-side benchmark in bench/
    (diffusion.py: ddpm vs diffusers' UNet2DModel + DDPMScheduler; diffusion_fm.py: fm vs torchcfm),
    each trained for `minutes` by its own loop, as those benchmarks do: process CPU time on one
    thread by default, wall time on --loop-threads with --loop-clock wall (bench/peer_loop.py)."""
    bench = __import__(module)
    a, b = getattr(bench, ours)(minutes, 0, dict(LOOP_RECIPE)), getattr(bench, theirs)(minutes, 0)
    return a["steps"] / a["cpu_seconds"], b["steps"] / b["cpu_seconds"]


def vae_pair(steps: int, repeats: int = 3) -> tuple[float, float]:
    """genlab vae vs pythae's VAE, the IWAE-paper MLP (784-200-200-50) on dynamically binarised MNIST
    at batch 100, each side in the loop its quality benchmark (bench/vae_mnist.py) trains it with:
    genlab's Trainer (its fused Adam) and, for pythae, that Trainer's loop written out with
    `torch.optim.Adam` as pythae's BaseTrainer builds it. Steps per CPU-second, the best of
    `repeats` interleaved runs of `steps` steps per side (after unmeasured warm-up steps)."""
    import vae_mnist
    from genlab.train.stream import BatchStream
    from genlab.train import Budget, TrainConfig, Trainer

    data, warmup, best = genlab.load_dataset("mnist"), max(2, steps // 10), {}

    def genlab_side() -> float:
        model = vae_mnist.build("genlab-vae", data, 0)
        cfg = TrainConfig(lr=vae_mnist.LR, batch_size=vae_mnist.BATCH, seed=0, device="cpu", clock="cpu",
                          checkpoint_every=0, log_every=10**9)
        Trainer(model, data, cfg, Budget(steps=warmup)).fit()
        trainer = Trainer(model, data, cfg, Budget(steps=steps))
        trainer.fit()
        return steps / max(trainer.elapsed, 1e-9)

    def pythae_side() -> float:
        model = vae_mnist.build("pythae-vae", data, 0)
        stream, loss_of = BatchStream(len(data.train), vae_mnist.BATCH, 0), vae_mnist.loss_fn(model)
        opt = torch.optim.Adam(model.parameters(), lr=vae_mnist.LR)
        model.train()
        for i in range(warmup + steps):
            if i == warmup:
                t0 = time.process_time()
            loss = loss_of(data.train[stream.next()])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps / max(time.process_time() - t0, 1e-9)

    for _ in range(repeats):
        for name, side in (("genlab", genlab_side), ("pythae", pythae_side)):
            best[name] = max(best.get(name, 0.0), side())
    return best["genlab"], best["pythae"]


LOOP_PEERS = [  # (pair name, peer module, measure(quick) -> (genlab rate, peer rate))
    ("genlab vae vs pythae VAE", "pythae", lambda quick: vae_pair(5 if quick else 600)),
    ("genlab ddpm vs diffusers UNet2DModel + DDPMScheduler", "diffusers",
     lambda quick: loop_pair("diffusion", "train_genlab", "train_diffusers", 0.05 if quick else 2.0)),
    ("genlab fm vs torchcfm", "torchcfm",
     lambda quick: loop_pair("diffusion_fm", "train_genlab", "train_torchcfm", 0.05 if quick else 2.0)),
]


def measure_costs(a, names: list[str]) -> dict:
    """The parts of bench/costs.py asked for on the command line (one thread except --ddp)."""
    import costs

    out = {}
    fams = {f: FAMILIES[f] for f in (names or FAMILIES)}
    if a.mfu:
        batch = 512
        peak = costs.matmul_peak()
        torch.set_num_threads(2)
        peak2 = costs.matmul_peak(clock=time.perf_counter)  # per wall second
        torch.set_num_threads(1)
        print(f"fp32 matmul peak: {peak:.1f} GFLOP/CPU-s on 1 thread; 2 threads {peak2:.1f} GFLOP/s", flush=True)
        rate = lambda fam, data, b, **hp: genlab_rate(fam, data, 20 if a.quick else 50, 3, b, **hp)  # noqa: E731
        rows = costs.mfu_rows(fams, rate, batch, peak)
        try:
            rows += costs.vae_mfu_rows(batch, peak, repeats=1 if a.quick else 3, steps=3 if a.quick else 20)
        except genlab.DataError as e:
            print(f"IWAE MLP on MNIST: skipped ({e})")
        out["mfu"] = {"batch": batch, "peak_gflops_per_cpu_s": peak, "peak_2_threads_gflops": peak2, "rows": rows}
    if a.epoch_cost:
        sizes = (750, 1500, 3000) if a.quick else (7500, 15000, 30000)
        try:
            out["epoch_cost"] = costs.epoch_costs("vae", sizes)
        except genlab.DataError as e:
            print(f"cost per epoch: skipped ({e})")
    if a.memory:
        out["memory"] = costs.peak_memory(fams, a.batch, steps=3 if a.quick else 20)
    if a.ddp:
        out["ddp"] = costs.ddp_pair(steps=20 if a.quick else 200)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 steps each (smoke run; not a measurement)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="alternated runs per side of the zuko pairs, best kept")
    p.add_argument("--families", help="comma-separated (default: all in the table)")
    p.add_argument("--no-peers", action="store_true", help="genlab's families only")
    p.add_argument("--loop-threads", type=int, default=1,
                   help="torch threads of the diffusers / torchcfm pairs (both sides; run alone for more than 1)")
    p.add_argument("--loop-clock", choices=("cpu", "wall"), default="cpu",
                   help="what the diffusers / torchcfm pairs' budgets count (wall: equal wall time)")
    p.add_argument("--peers", help="only these peer libraries (comma-separated: zuko, pythae, diffusers, torchcfm)")
    p.add_argument("--channels-last", action="store_true",
                   help="genlab trains with channels_last=true (NHWC), in the family rows and the diffusers / torchcfm pairs")
    p.add_argument("--mfu", action="store_true", help="model-FLOP utilisation at batch 512 (bench/costs.py)")
    p.add_argument("--epoch-cost", action="store_true", help="seconds per epoch at three MNIST sizes")
    p.add_argument("--memory", action="store_true", help="peak memory of each family's run")
    p.add_argument("--ddp", action="store_true", help="ddpm UNet: 2 processes x 1 thread vs 1 x 2 (torchrun)")
    p.add_argument("--out", help="JSON file (default bench/results/throughput.json; --quick writes none unless given)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    steps, warmup = (5, 2) if a.quick else (a.steps, max(5, a.steps // 10))
    names = [] if a.families == "none" else a.families.split(",") if a.families else list(FAMILIES)
    rows = {}
    sampling = {}
    for fam in names:
        trained = []
        extra = {"channels_last": True} if a.channels_last else {}
        rows[fam] = genlab_rate(fam, "digits", steps, warmup, a.batch, model_out=trained, **FAMILIES[fam], **extra)
        sampling[fam] = s = sampling_rate(trained[0])
        per_call = f", {s['network_calls']} network calls, {s['ms_per_call']:.1f} CPU-ms each" if s["ms_per_call"] else ""
        print(f"{fam:10s} {rows[fam]:8.1f} steps/CPU-s  (batch {a.batch}, digits 8x8, 1 thread); sampling "
              f"{s['samples_per_s']:.0f} samples/CPU-s (64 at once{per_call})", flush=True)
    vec = vector_digits()
    ratios = []
    wanted = None if a.peers is None else set(a.peers.split(","))
    import peer_loop

    peer_loop.THREADS, peer_loop.CLOCK = a.loop_threads, a.loop_clock
    LOOP_RECIPE.update({"channels_last": True} if a.channels_last else {})
    unknown = (wanted or set()) - {row[3] for row in PEERS} - {row[1] for row in LOOP_PEERS}
    if unknown:
        p.error(f"--peers: unknown {', '.join(sorted(unknown))}")
    for fam, hp, peer, module, rate, peer_hp in ([] if a.no_peers else PEERS):
        if wanted is not None and module not in wanted:
            continue
        if importlib.util.find_spec(module) is None:
            print(f"{peer}: skipped ({module} is not installed: pip install 'genlab[bench]')")
            continue
        if "transform" in hp and "transform" not in hyperparameters(fam):
            print(f"{peer}: skipped (genlab {fam} has no setting transform=)")
            continue
        ours = theirs = 0.0
        for _ in range(1 if a.quick else a.repeats):  # alternated, best of each: load on the machine hits both sides alike
            ours = max(ours, genlab_rate(fam, vec, steps, warmup, a.batch, **hp))
            theirs = max(theirs, rate(data=vec, steps=steps, warmup=warmup, batch=a.batch, **peer_hp))
        ratios.append({"genlab": f"{fam} {hp}", "peer": peer, "genlab_steps_per_s": ours,
                       "peer_steps_per_s": theirs, "ratio": ours / theirs})
        print(f"genlab {fam} vs {peer}: {ours:.1f} vs {theirs:.1f} steps/CPU-s = {ours / theirs:.2f}x", flush=True)
    for pair, module, measure in ([] if a.no_peers else LOOP_PEERS):
        if wanted is not None and module not in wanted:
            continue
        if importlib.util.find_spec(module) is None:
            print(f"{pair}: skipped ({module} is not installed)")
            continue
        try:
            ours, theirs = measure(a.quick)
        except genlab.DataError as e:  # MNIST for the VAE pair
            print(f"{pair}: skipped ({e})")
            continue
        ratios.append({"pair": pair, "genlab_steps_per_s": ours, "peer_steps_per_s": theirs, "ratio": ours / theirs})
        unit = "steps/CPU-s" if module == "pythae" or a.loop_clock == "cpu" else "steps/wall-s"
        print(f"{pair}: {ours:.1f} vs {theirs:.1f} {unit} = {ours / theirs:.2f}x", flush=True)
    costs = measure_costs(a, names)
    out = {"quick": a.quick, "steps": steps, "batch": a.batch, "threads": 1, "clock": "process CPU time",
           "loop_pairs": {"threads": a.loop_threads, "clock": a.loop_clock, "genlab_settings": dict(LOOP_RECIPE)},
           "channels_last": a.channels_last,
           "families": rows, "sampling": sampling, "peers": ratios, "torch": torch.__version__,
           "costs": costs, "note": "a --quick run is a smoke test, not a measurement"}
    path = a.out or (None if a.quick else str(RESULTS / "throughput.json"))
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        from genlab.io import atomic_write_json

        atomic_write_json(Path(path), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
