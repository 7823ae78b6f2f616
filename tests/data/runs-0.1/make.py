"""Tiny run directories made by the pre-contract code, with fingerprints of what they sample."""
import json, sys, shutil, torch
from pathlib import Path
import genlab
torch.set_num_threads(1)
out = Path(sys.argv[1]); shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
tiny = {
    "pca": {"latent_dim": 4},
    "ae": {"latent_dim": 4, "hidden": [16]},
    "vae": {"latent_dim": 4, "hidden": [16], "conditional": True},
    "gan": {"latent_dim": 4, "hidden": [16, 16], "conditional": True},
    "realnvp": {"n_scales": 1, "steps_per_scale": 1, "channels": 4},
    "maf": {"n_layers": 1, "hidden": [16]},
    "ddpm": {"timesteps": 50, "schedule": "cosine", "base": 8, "mults": [1], "attention": False, "conditional": True},
    "fm": {"base": 8, "mults": [1], "attention": False},
}
fp = {}
for fam, hp in tiny.items():
    run = genlab.train(fam, "digits", out=out / fam, steps=2, seed=0, progress=False, sample_every=0, **hp)
    m = genlab.load(out / fam)
    g = torch.Generator().manual_seed(0)
    opts = {"steps": 3} if fam in ("ddpm", "fm") else {}
    kw = {"y": torch.arange(6) % 10} if hp.get("conditional") else {}
    s = m.sample(6, generator=g, **kw, **opts)
    fp[fam] = s.double().sum().item()
    for f in list((out / fam).iterdir()):
        if f.name not in ("config.json", "model.safetensors"):
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    print(fam, fp[fam], sum(f.stat().st_size for f in (out / fam).iterdir()))
json.dump(fp, open(out / "fingerprints.json", "w"), indent=1)
