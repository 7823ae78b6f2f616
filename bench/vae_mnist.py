"""genlab vs pythae: VAE and IWAE (k=50) on dynamically binarized MNIST, side by side.

What it measures, per model, under the same wall-time training budget on the same machine
(CPU, same torch thread count, one model at a time):
  training steps, epochs, steps/s, seconds per epoch, test ELBO (single-sample bound with
  analytic KL), test NLL (importance-sampled L_k, k=5000 by default) and evaluation time;
  then genlab/pythae ratios for the matching objective and a line against the targets of
  Burda et al. (2016, Table 1, one stochastic layer): NLL <= 86.8 (VAE), <= 84.8 (IWAE k=50).

Protocol. Architecture of the IWAE paper: encoder 784-200-200-(2x50), decoder 50-200-200-784,
tanh, Bernoulli likelihood; both libraries start from the SAME initial weights (the pythae
networks are loaded from a genlab model built with the same seed). Adam, lr 1e-3, batch 100,
constant lr, no schedule (Burda used batch 20 and a 3^i-pass lr schedule; we do not).
Training batches come in the same order for both (genlab's BatchStream, same seed) and are
binarized afresh every time they are used, x ~ Bernoulli(intensity) (dynamic binarization).
The test set is binarized ONCE with torch.Generator().manual_seed(seed) and the first
--eval-n images are scored. Every model is scored by one shared estimator (`score`, below,
with the same random numbers for every model) and also by its library's own estimator
(genlab `model.log_prob`, pythae `model.get_nll`).

Run (from the project root):
    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/vae_mnist.py --minutes 60
    GENLAB_DATA_DIR=/work/shared/data .venv/bin/python bench/vae_mnist.py --minutes 0.3 --eval-n 200 --k 100
"""

from __future__ import annotations

import argparse
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
TARGETS = {"vae": 86.8, "iwae": 84.8}  # test NLL in nats, Burda et al. 2016 Table 1 (86.76, 84.78)
MODELS = ("genlab-vae", "genlab-iwae", "pythae-vae", "pythae-iwae")
ROWS = 20_000  # images x samples decoded at once when scoring (bounds memory to ~100 MB)
LOG_2PI = math.log(2 * math.pi)


# -- genlab: its VAE unchanged, its Trainer unchanged; only the batches are binarized ---------
class DynamicBinarizedVAE(VAE):
    """genlab's VAE trained on x ~ Bernoulli(x), resampled each time a batch is used."""

    def loss(self, x, y=None):
        return super().loss(torch.bernoulli(x), y)


def genlab_model(data, seed: int, iwae_k: int) -> VAE:
    seed_everything(seed)
    model = genlab.create_model("vae", data, latent_dim=LATENT, net="mlp", hidden=HIDDEN, activation="tanh",
                                likelihood="bernoulli", iwae_k=iwae_k)
    model.__class__ = DynamicBinarizedVAE  # same parameters and config; evaluation is not affected
    return model


def train_genlab(model, data, args, name) -> dict:
    """genlab's own Trainer. Its `elapsed` (the budget clock) excludes logging and callbacks."""
    cfg = TrainConfig(lr=LR, batch_size=BATCH, seed=args.seed, device="cpu", checkpoint_every=0)
    trainer = Trainer(model, data, cfg, Budget(minutes=args.minutes), callbacks=[ProgressBar(name)])
    t0 = time.perf_counter()
    trainer.fit()
    return {"steps": trainer.step, "epochs": trainer.epoch, "train_seconds": trainer.elapsed,
            "wall_seconds": time.perf_counter() - t0, "final_train_loss": trainer.history[-1]["loss"]}


# -- pythae: its VAE / IWAE with our encoder and decoder, trained by a plain loop --------------
class Encoder(BaseEncoder):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        mu, logvar = self.body(x.flatten(1)).chunk(2, -1)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class Decoder(BaseDecoder):
    """pythae's "bce" loss expects probabilities, so forward returns sigmoid(logits)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.body(z)).reshape(len(z), 1, 28, 28))


def mlp(widths) -> nn.Sequential:  # Linear, Tanh, ..., Linear: the same layout as genlab.nn.MLP
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def pythae_model(data, seed: int, iwae_k: int):
    ref = genlab_model(data, seed, iwae_k)  # the same initial weights as the genlab run
    enc, dec = mlp([784, *HIDDEN, 2 * LATENT]), mlp([LATENT, *reversed(HIDDEN), 784])
    enc.load_state_dict(ref.encoder.body.state_dict())
    dec.load_state_dict(ref.decoder.body.state_dict())
    kw = dict(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    if iwae_k > 1:
        return IWAE(IWAEConfig(**kw, number_samples=iwae_k), encoder=Encoder(enc), decoder=Decoder(dec))
    return PythaeVAE(VAEConfig(**kw), encoder=Encoder(enc), decoder=Decoder(dec))


def train_pythae(model, data, args, name) -> dict:
    """The loop genlab's Trainer runs, written out for pythae (same batches, optimizer, clock).

    pythae's BaseTrainer is not used: it has an epoch budget only (no wall time), iterates a
    per-example DataLoader (no dynamic binarization without a custom dataset), deep-copies the
    model after every epoch to keep the best one, and writes the final model to disk.
    """
    stream = BatchStream(len(data.train), BATCH, args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    seed_everything(args.seed)  # as Trainer.fit does: same binarization noise stream
    budget, steps, elapsed, window = args.minutes * 60, 0, 0.0, []
    bar = tqdm(total=int(budget), desc=name, unit="s", dynamic_ncols=True, mininterval=0.5)
    model.train()
    t0 = t_last = time.perf_counter()
    while elapsed < budget:
        x = torch.bernoulli(data.train[stream.next()])
        out = model({"data": x})
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        steps += 1
        window.append(out.loss.detach())
        now = time.perf_counter()
        elapsed += now - t_last
        t_last = now
        if steps % 25 == 0 or elapsed >= budget:  # log as genlab does, off the clock
            loss = torch.stack(window).mean().item()
            window = []
            if not math.isfinite(loss):
                raise RuntimeError(f"{name}: loss became {loss} at step {steps}")
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if int(elapsed) > bar.n:
            bar.update(min(int(elapsed), bar.total) - bar.n)
        t_last += time.perf_counter() - now
    bar.close()
    model.eval()
    return {"steps": steps, "epochs": stream.epochs_done, "train_seconds": elapsed,
            "wall_seconds": time.perf_counter() - t0, "final_train_loss": loss}


# -- one estimator for both libraries -------------------------------------------------------
@torch.no_grad()
def score(posterior, logits, x, k: int):
    """Per-image ELBO (one z ~ q, analytic KL) and L_k = logsumexp_i log w_i - log k, in nats.

    posterior(x) -> (mu, logvar) of q(z|x); logits(z) -> [n, 784] Bernoulli logits of p(x|z);
    log w = log p(x|z) + log N(z; 0, I) - log q(z|x), z = mu + sigma * eps.
    """
    c = min(k, ROWS)
    b = max(1, ROWS // c)
    elbo, lk = [], []
    for xb in x.split(b):
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
            lpz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
            lqz = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)
            log_w.append(lpx + lpz - lqz)
        lk.append(torch.logsumexp(torch.cat(log_w), 0) - math.log(k))
    return torch.cat(elbo), torch.cat(lk)


@torch.no_grad()
def native_nll(model, lib: str, x, k: int) -> float:
    """The library's own estimator: genlab `log_prob`, pythae `get_nll` (which returns mean log p)."""
    c = min(k, ROWS)
    if lib == "genlab":  # log_prob decodes chunk x len(x) rows at once, so feed it a few images at a time
        return -torch.cat([model.log_prob(xb, k=k, chunk=c) for xb in x.split(max(1, ROWS // c))]).mean().item()
    bs = next(d for d in range(c, 0, -1) if k % d == 0)  # get_nll uses batch_size samples if k < batch_size
    return -float(model.get_nll(x, n_samples=k, batch_size=bs))


def evaluate(model, lib: str, x, args) -> dict:
    model.eval()
    if lib == "genlab":
        posterior, logits = model.posterior, lambda z: model.decoder(z).flatten(1)
    else:
        def posterior(xb):
            o = model.encoder(xb)
            return o.embedding, o.log_covariance
        logits = model.decoder.body
    torch.manual_seed(args.seed + 1)  # common random numbers: every model sees the same eps
    t0 = time.perf_counter()
    elbo, lk = score(posterior, logits, x, args.k)
    t1 = time.perf_counter()
    native = native_nll(model, lib, x, args.k)
    t2 = time.perf_counter()
    return {"test_elbo": elbo.mean().item(), "test_nll": -lk.mean().item(), "test_nll_se": lk.std().item() / len(lk) ** 0.5,
            "test_nll_native": native, "eval_seconds": t1 - t0, "eval_native_seconds": t2 - t1}


# -- the run ----------------------------------------------------------------------------------
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=60.0, help="training wall time per model")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--eval-n", type=int, default=10_000, help="test images scored")
    p.add_argument("--k", type=int, default=5000, help="importance samples for the test NLL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads, for every model")
    p.add_argument("--json", default="bench/results/vae_mnist.json")
    args = p.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if bad := [m for m in names if m not in MODELS]:
        p.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)

    data = genlab.load_dataset("mnist")
    test = torch.bernoulli(data.test, generator=torch.Generator().manual_seed(args.seed))[: args.eval_n]
    protocol = (f"dynamic binarization of training batches; test set binarized once with seed {args.seed}, "
                f"first {len(test)} images; Adam lr {LR}, batch {BATCH}, {args.minutes} min per model, "
                f"{args.threads} threads; NLL = -L_{args.k}")
    print(f"protocol: {protocol}", flush=True)

    results = {}
    for name in names:
        lib, objective = name.split("-")
        iwae_k = IWAE_K if objective == "iwae" else 1
        build, fit = (genlab_model, train_genlab) if lib == "genlab" else (pythae_model, train_pythae)
        model = build(data, args.seed, iwae_k)
        r = fit(model, data, args, name)
        r.update(evaluate(model, lib, test, args))
        r["steps_per_second"] = r["steps"] / r["train_seconds"]
        r["seconds_per_epoch"] = r["train_seconds"] / r["epochs"]
        results[name] = r
        print(f"{name}: NLL {r['test_nll']:.2f} (native {r['test_nll_native']:.2f}), ELBO {r['test_elbo']:.2f}, "
              f"{r['steps']} steps in {r['train_seconds']:.0f} s", flush=True)

    head = f"{'model':<12} {'steps':>7} {'epochs':>7} {'steps/s':>8} {'s/epoch':>8} {'ELBO':>8} {'NLL':>8} {'NLL nat':>8} {'eval s':>7}"
    print("\n" + head + "\n" + "-" * len(head))
    for name, r in results.items():
        print(f"{name:<12} {r['steps']:>7} {r['epochs']:>7.2f} {r['steps_per_second']:>8.1f} {r['seconds_per_epoch']:>8.1f} "
              f"{r['test_elbo']:>8.2f} {r['test_nll']:>8.2f} {r['test_nll_native']:>8.2f} {r['eval_seconds']:>7.1f}")
    print(f"(ELBO: mean single-sample bound; NLL: shared estimator -L_{args.k} over {len(test)} test images; "
          "NLL nat: the library's own estimator)")

    ratios = {}
    for obj in ("vae", "iwae"):
        g, q = results.get(f"genlab-{obj}"), results.get(f"pythae-{obj}")
        if g and q:
            ratios[obj] = {"time_per_epoch_ratio": g["seconds_per_epoch"] / q["seconds_per_epoch"],
                           "steps_per_second_ratio": g["steps_per_second"] / q["steps_per_second"],
                           "nll_difference_nats": g["test_nll"] - q["test_nll"]}
            x = ratios[obj]
            print(f"{obj}: genlab/pythae time per epoch x{x['time_per_epoch_ratio']:.2f}, "
                  f"throughput x{x['steps_per_second_ratio']:.2f}, NLL difference {x['nll_difference_nats']:+.2f} nats")
    verdict = [f"{n} {r['test_nll']:.2f} {'ok' if r['test_nll'] <= TARGETS[n.split('-')[1]] else 'miss'}"
               for n, r in results.items()]
    print(f"targets NLL <= {TARGETS['vae']} (VAE), <= {TARGETS['iwae']} (IWAE k=50): " + "; ".join(verdict))

    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args), "protocol": protocol,
              "targets": TARGETS, "results": results, "ratios_genlab_over_pythae": ratios,
              "versions": {"torch": torch.__version__, "genlab": genlab.__version__,
                           "pythae": importlib.metadata.version("pythae"), "python": platform.python_version()},
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
