"""genlab vs pythae: VAE and IWAE (k=50) on dynamically binarized MNIST, side by side, in one run.

Each model trains for the same wall time (--minutes) on the same CPU and torch threads, one after
the other. Reported per model: steps, epochs, steps/s, s/epoch, test ELBO (one z per image, analytic
KL), test NLL (-L_k, k=5000 importance samples), eval time; then genlab/pythae ratios and the targets
of Burda et al. 2016 (Table 1, one stochastic layer): NLL <= 86.8 (VAE), <= 84.8 (IWAE k=50). As the
sequential runs may meet different background load, ms/step (best of 7 interleaved timings of one
training step) is the load-robust speed figure.

Protocol: encoder 784-200-200-(2x50), decoder 50-200-200-784, tanh, Bernoulli likelihood, the same
initial weights for all four models; Adam, lr 1e-3, batch 100, constant lr (Burda et al.: batch 20,
3^i-pass schedule). Same batch order for both libraries (genlab's BatchStream), each batch binarized
afresh when used, x ~ Bernoulli(intensity). The test set is binarized once with
torch.Generator().manual_seed(seed); its first --eval-n images are scored by one shared estimator
(`score`, same random numbers for every model) and by each library's own (log_prob / get_nll).
Run from the project root:
    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/vae_mnist.py        # 4 x 60 min + eval
    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/vae_mnist.py --minutes 0.3 --eval-n 200 --k 100
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

import genlab
from genlab.models.vae import VAE, gaussian_kl
from genlab.train import Budget, TrainConfig, Trainer
from genlab.train.callbacks import ProgressBar
from genlab.train.checkpoint import seed_everything
from genlab.train.stream import BatchStream
from pythae.models import IWAE, VAE as PythaeVAE, IWAEConfig, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder

LATENT, HIDDEN, BATCH, LR, IWAE_K = 50, (200, 200), 100, 1e-3, 50
TARGETS = {"vae": 86.8, "iwae": 84.8}  # test NLL in nats; Burda et al. 2016 Table 1: 86.76, 84.78
MODELS = ("genlab-vae", "genlab-iwae", "pythae-vae", "pythae-iwae")
ROWS = 20_000  # (images x samples) decoded at once when scoring: ~60 MB per 784-wide tensor


# -- genlab: its VAE (binarize=True: dynamic binarization) and its Trainer, unchanged -----------
def genlab_model(data, seed: int, iwae_k: int) -> VAE:
    seed_everything(seed)
    return genlab.create_model("vae", data, latent_dim=LATENT, net="mlp", hidden=HIDDEN, activation="tanh",
                               likelihood="bernoulli", iwae_k=iwae_k, binarize=True)


def train_genlab(model, data, args, name) -> dict:
    """genlab's own Trainer; its budget clock (`elapsed`) leaves out logging and callbacks."""
    cfg = TrainConfig(lr=LR, batch_size=BATCH, seed=args.seed, device="cpu", checkpoint_every=0)
    trainer = Trainer(model, data, cfg, Budget(minutes=args.minutes), callbacks=[ProgressBar(name)])
    t0 = time.perf_counter()
    trainer.fit()
    return {"steps": trainer.step, "epochs": trainer.epoch, "train_seconds": trainer.elapsed,
            "wall_seconds": time.perf_counter() - t0, "final_train_loss": trainer.history[-1]["loss"]}


# -- pythae: its VAE / IWAE with the same networks, trained by the same plain loop ------------
class Encoder(BaseEncoder):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def posterior(self, x):  # mean and log-variance of q(z|x), unclamped (genlab clamps to [-12, 8])
        return self.body(x.flatten(1)).chunk(2, -1)

    def forward(self, x):
        mu, logvar = self.posterior(x)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class Decoder(BaseDecoder):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, z):  # pythae's "bce" loss takes probabilities, so sigmoid(logits)
        return ModelOutput(reconstruction=torch.sigmoid(self.body(z)).reshape(len(z), 1, 28, 28))


def pythae_model(data, seed: int, iwae_k: int):
    ref = genlab_model(data, seed, iwae_k)  # plain torch copies of its layers (Linear, Tanh, ...) and weights
    enc, dec = (nn.Sequential(*copy.deepcopy(list(net.body))) for net in (ref.encoder, ref.decoder))
    kw = dict(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    if iwae_k > 1:
        return IWAE(IWAEConfig(**kw, number_samples=iwae_k), encoder=Encoder(enc), decoder=Decoder(dec))
    return PythaeVAE(VAEConfig(**kw), encoder=Encoder(enc), decoder=Decoder(dec))


def build(name: str, data, seed: int):
    lib, objective = name.split("-")
    return (genlab_model if lib == "genlab" else pythae_model)(data, seed, IWAE_K if objective == "iwae" else 1)


def loss_fn(model):
    """x (intensities) -> training loss; genlab's model binarizes in `loss`, pythae's batch here."""
    if isinstance(model, VAE):
        return lambda x: model.loss(x)["loss"]
    return lambda x: model({"data": torch.bernoulli(x)}).loss


def train_pythae(model, data, args, name) -> dict:
    """genlab's Trainer loop written out for pythae: same batches, optimizer, clock and logging.
    Not pythae's BaseTrainer: it has an epoch budget only (no wall time), a per-example DataLoader
    (no dynamic binarization without a custom dataset), deep-copies the model every epoch to keep
    the best one and writes the final model to disk."""
    stream, loss_of = BatchStream(len(data.train), BATCH, args.seed), loss_fn(model)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    seed_everything(args.seed)  # as Trainer.fit does
    budget, steps, elapsed, window = args.minutes * 60, 0, 0.0, []
    bar = tqdm(total=int(budget), desc=name, unit="s", dynamic_ncols=True, mininterval=0.5)
    model.train()
    t0 = t_last = time.perf_counter()
    while elapsed < budget:
        loss = loss_of(data.train[stream.next()])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        window.append(loss.detach())
        now = time.perf_counter()
        elapsed, t_last = elapsed + now - t_last, now
        if steps % 25 == 0 or elapsed >= budget:  # Trainer's log_every, off the clock as there
            mean_loss, window = torch.stack(window).mean().item(), []
            if not math.isfinite(mean_loss):
                raise RuntimeError(f"{name}: loss became {mean_loss} at step {steps}")
            bar.set_postfix(loss=f"{mean_loss:.4g}", refresh=False)
        if int(elapsed) > bar.n:
            bar.update(min(int(elapsed), bar.total) - bar.n)
        t_last += time.perf_counter() - now
    bar.close()
    return {"steps": steps, "epochs": stream.epochs_done, "train_seconds": elapsed,
            "wall_seconds": time.perf_counter() - t0, "final_train_loss": mean_loss}


def step_times(data, names, seed: int, repeats: int = 7, steps: int = 20, batch: int = BATCH) -> dict:
    """Best-of-`repeats` ms per training step (binarize, loss, backward, Adam), all models
    interleaved on one batch, so background load on the machine hits them alike."""
    models, x, best = {n: build(n, data, seed) for n in names}, data.train[:batch], {}
    runs = {n: (loss_fn(m), torch.optim.Adam(m.parameters(), lr=LR)) for n, m in models.items()}
    for _ in range(repeats):
        for n, (loss_of, opt) in runs.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss_of(x).backward()
                opt.step()
            best[n] = min(best.get(n, math.inf), (time.perf_counter() - t0) / steps * 1e3)
    return best


# -- scoring: one estimator for both libraries, plus each library's own -----------------------
@torch.no_grad()
def score(posterior, logits, x, k: int):
    """Per-image ELBO (one z ~ q, analytic KL) and L_k = logsumexp_i log w_i - log k, in nats, where
    log w = log p(x|z) + log N(z; 0, I) - log N(z; mu, sigma^2), z = mu + sigma * eps, and
    posterior(x) -> (mu, logvar) of q(z|x), logits(z) -> [n, 784] Bernoulli logits of p(x|z)."""
    c, elbo, lk = min(k, ROWS), [], []
    for xb in x.split(max(1, ROWS // c)):
        xf = xb.flatten(1)
        mu, logvar = posterior(xb)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        rec = -F.binary_cross_entropy_with_logits(logits(z), xf, reduction="none").sum(-1)
        elbo.append(rec - gaussian_kl(mu, logvar))
        log_w = []
        for i in range(0, k, c):
            eps = torch.randn(min(c, k - i), *mu.shape)
            z = mu + (0.5 * logvar).exp() * eps
            out = logits(z.reshape(-1, LATENT)).reshape(*z.shape[:2], -1)
            lpx = -F.binary_cross_entropy_with_logits(out, xf.expand_as(out), reduction="none").sum(-1)
            log_w.append(lpx - 0.5 * (z.pow(2) - eps.pow(2) - logvar).sum(-1))  # the log(2 pi) terms cancel
        lk.append(torch.logsumexp(torch.cat(log_w), 0) - math.log(k))
    return torch.cat(elbo), torch.cat(lk)


@torch.no_grad()
def native_nll(model, x, k: int) -> float:
    """The library's own estimate: genlab `log_prob`, pythae `get_nll` (which returns mean log p)."""
    c = min(k, ROWS)
    if isinstance(model, VAE):
        return -model.log_prob(x, k=k, rows=ROWS).mean().item()
    bs = next(d for d in range(c, 0, -1) if k % d == 0)  # get_nll draws batch_size samples even if k is smaller
    return -float(model.get_nll(x, n_samples=k, batch_size=bs))


def evaluate(model, x, args) -> dict:
    model.eval()
    if isinstance(model, VAE):
        posterior, logits = model.posterior, lambda z: model.decoder(z).flatten(1)
    else:
        posterior, logits = model.encoder.posterior, model.decoder.body
    torch.manual_seed(args.seed + 1)  # common random numbers: every model gets the same eps
    t0 = time.perf_counter()
    elbo, lk = score(posterior, logits, x, args.k)
    t1 = time.perf_counter()
    native = native_nll(model, x, args.k)
    return {"test_elbo": elbo.mean().item(), "test_nll": -lk.mean().item(),
            "test_nll_se": lk.std().item() / len(lk) ** 0.5, "test_nll_native": native,
            "eval_seconds": t1 - t0, "eval_native_seconds": time.perf_counter() - t1}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=60.0, help="training wall time per model")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--eval-n", type=int, default=10_000, help="test images scored")
    p.add_argument("--k", type=int, default=5000, help="importance samples for the test NLL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads, the same for every model")
    p.add_argument("--json", default="bench/results/vae_mnist.json")
    args = p.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if bad := [m for m in names if m not in MODELS]:
        p.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)

    data = genlab.load_dataset("mnist")
    test = torch.bernoulli(data.test, generator=torch.Generator().manual_seed(args.seed))[: args.eval_n]
    protocol = (f"training batches binarized dynamically; test set binarized once (seed {args.seed}), first "
                f"{len(test)} images; Adam lr {LR}, batch {BATCH}, {args.minutes} min per model, "
                f"{args.threads} threads; NLL = -L_{args.k}")
    print(f"protocol: {protocol}\ninterleaved step timing ...", flush=True)
    best_ms = step_times(data, names, args.seed)

    results = {}
    for name in names:
        model, load = build(name, data, args.seed), os.getloadavg()[0]
        r = (train_genlab if name.startswith("genlab") else train_pythae)(model, data, args, name)
        r["load_avg_1min"] = [load, os.getloadavg()[0]]  # before / after training: was the machine busy?
        r.update(evaluate(model, test, args), steps_per_second=r["steps"] / r["train_seconds"],
                 seconds_per_epoch=r["train_seconds"] / r["epochs"], best_ms_per_step=best_ms[name])
        results[name] = r
        print(f"{name}: {r['steps']} steps, ELBO {r['test_elbo']:.2f}, NLL {r['test_nll']:.2f}", flush=True)

    cols = ("model", "steps", "epochs", "steps/s", "s/epoch", "ms/step", "ELBO", "NLL", "NLL nat", "eval s")
    head = f"{cols[0]:<12}" + "".join(f"{c:>9}" for c in cols[1:])
    print("\n" + head + "\n" + "-" * len(head))
    for name, r in results.items():
        print(f"{name:<12}{r['steps']:>9}{r['epochs']:>9.2f}{r['steps_per_second']:>9.1f}{r['seconds_per_epoch']:>9.1f}"
              f"{r['best_ms_per_step']:>9.1f}{r['test_elbo']:>9.2f}{r['test_nll']:>9.2f}{r['test_nll_native']:>9.2f}"
              f"{r['eval_seconds'] + r['eval_native_seconds']:>9.1f}")
    print(f"steps/s, s/epoch: the budgeted run; ms/step: best of 7 interleaved timings of one step; ELBO: mean bound;\n"
          f"NLL: shared estimator -L_{args.k} on {len(test)} test images; NLL nat: genlab log_prob / pythae get_nll")

    ratios = {}
    for obj in ("vae", "iwae"):
        g, q = results.get(f"genlab-{obj}"), results.get(f"pythae-{obj}")
        if g and q:
            x = ratios[obj] = {"time_per_epoch_ratio": g["seconds_per_epoch"] / q["seconds_per_epoch"],
                               "steps_per_second_ratio": g["steps_per_second"] / q["steps_per_second"],
                               "ms_per_step_ratio": g["best_ms_per_step"] / q["best_ms_per_step"],
                               "nll_difference_nats": g["test_nll"] - q["test_nll"]}
            print(f"{obj}: genlab/pythae time per epoch x{x['time_per_epoch_ratio']:.2f}, throughput "
                  f"x{x['steps_per_second_ratio']:.2f}, ms/step x{x['ms_per_step_ratio']:.2f}; "
                  f"NLL genlab - pythae {x['nll_difference_nats']:+.2f} nats")
    ok = {n: "ok" if r["test_nll"] <= TARGETS[n.split("-")[1]] else "miss" for n, r in results.items()}
    print(f"targets NLL <= {TARGETS['vae']} (VAE), <= {TARGETS['iwae']} (IWAE k=50): "
          + "; ".join(f"{n} {results[n]['test_nll']:.2f} {v}" for n, v in ok.items()))

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "")
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args), "protocol": protocol,
              "targets": TARGETS, "results": results, "ratios_genlab_over_pythae": ratios,
              "versions": {"torch": torch.__version__, "genlab": genlab.__version__,
                           "pythae": importlib.metadata.version("pythae"), "python": platform.python_version()},
              "machine": {"platform": platform.platform(), "processor": cpu or platform.processor(),
                          "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
