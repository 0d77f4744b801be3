"""The VAE family trained the same minutes on mnist: held-out likelihood bounds, sample scores and speed.

    python benchmarks/vae.py --data-dir ../shared/data/mnist --minutes 10 --out runs/vae-bench \
        [--models vae,hvae,vqvae] [--iwae-k 1000] [--likelihood-n 1000] [-n 5000]

One model at a time (on two cores a second busy process slows both by an order of magnitude).
- `vae` and `hvae` use the Bernoulli decoder on dynamically binarised mnist, the setting of the published
  figures (VAE and IWAE: Burda et al. 2016; NVAE: Vahdat & Kautz 2020), so that their likelihoods are in
  the papers' units: nats per binarised 28x28 image. The table gives the importance-weighted bound with
  `--iwae-k` samples (the papers' k = 5000; an upper bound on -log p(x) that tightens as k grows) and the
  one-sample ELBO, both on the first `--likelihood-n` validation images, each through
  `genlab eval --likelihood-option k=K`. bits/dim is the IWAE figure per binary pixel.
- `vae-logistic` is the default VAE (discretised logistic over 256 levels): its bound is of 8-bit images,
  in bits per 8-bit dimension, not comparable with the binarised rows.
- `vqvae` is the autoencoder for half of the minutes, then its code prior (`vqvae-prior`) for the other
  half, the pair scored by the prior run's samples. It has no image likelihood (only the codes').
- Sample scores: `genlab eval` FID, precision, recall and samples/s against the training split, on each
  run's final weights (VAE samples do not collapse late, so there is no best-checkpoint selection).
- Paired: the bound's spread between images dwarfs the gap between two models, so every pair of the
  binarised-image models is also compared image by image: both see the same binarisation of the same
  `--likelihood-n` images, and the table gives the mean difference of their IWAE bounds with its
  standard error, and on how many images the first is lower.

Published on dynamically binarised MNIST (test NLL, nats): VAE 86.76 and IWAE 84.78 with one stochastic
layer, IWAE 82.90 with two (Burda et al. 2016, k = 5000); NVAE 78.01 (Vahdat & Kautz 2020). Those train on
60,000 images for days on GPUs; here 9,000 images (the mnist test split held at ../shared/data, 1,000 held
out) for minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import torch

import genlab
from genlab.batch import X
from genlab.eval.evaluate import dataset_for
from genlab.nn.distributions import dynamic_binarization
from genlab.runs import Run

# per model: the model trained and its settings
MODELS = {
    "vae": {"model": "vae", "config": {"decoder": "bernoulli"}},
    "vae-logistic": {"model": "vae", "config": {}},
    "hvae": {"model": "hvae", "config": {"decoder": "bernoulli"}},
}
# hvae's KL warm-up is NVAE's first 30% of training; the model counts it in steps, so a short probe run
# measures this machine's steps per minute first
WARMUP_SHARE = {"hvae": 0.3}
PROBE_MINUTES = 0.25


def likelihood(run: Run, k: int, n: int, data_dir: str | None) -> dict:
    """The IWAE bound (k) and the ELBO on the first n validation images, in nats per image (through genlab eval)."""
    out = {}
    for name, options in (("elbo", {"k": 1}), ("iwae", {"k": k})):
        # few samples: this call is for the held-out bound; not written to eval.json beside the real scores
        entry = genlab.evaluate(run.path, n=100, data_dir=data_dir, likelihood_n=n, likelihood_options=options,
                                memorization=False, write=False)
        lik, dims = entry["likelihood"], math.prod(run.spec.shape)
        out[name] = lik["bits_per_dim"] * dims * math.log(2)
        out[f"{name}_se"] = lik["std_error"] * dims * math.log(2)
        out["bits_per_dim"] = lik["bits_per_dim"]  # the last: the IWAE bound's
        out["likelihood_seconds"] = entry["timings"].get("likelihood")
    return out


@torch.inference_mode()
def per_image_iwae(run: Run, binary: torch.Tensor, k: int, seed: int, batch_size: int = 50) -> torch.Tensor:
    """The IWAE bound (k samples) in nats of each already binarised image ({-1, 1} pixels, which the
    model's own binarisation leaves as they are), (N,) float64."""
    model = run.load_model(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    bits = [model.bits_per_dim({X: binary[i : i + batch_size]}, generator=generator, k=k).double()
            for i in range(0, len(binary), batch_size)]
    return torch.cat(bits) * math.prod(binary.shape[1:]) * math.log(2)


def paired(runs: dict[str, Run], k: int, n: int, seed: int, data_dir: str | None) -> list[str]:
    """Image-by-image differences of the IWAE bound between every pair of binarised-image runs."""
    binary_runs = {name: run for name, run in runs.items() if MODELS.get(name, {}).get("config", {}).get("decoder")
                   == "bernoulli"}
    if len(binary_runs) < 2:
        return []
    first = next(iter(binary_runs.values()))
    images = dataset_for("image", first, None, data_dir).x_val[:n]
    binary = dynamic_binarization(images, torch.Generator().manual_seed(seed)) * 2 - 1  # one draw for every model
    nats = {name: per_image_iwae(run, binary, k, seed) for name, run in binary_runs.items()}
    lines = []
    for a, b in itertools.combinations(nats, 2):
        diff = nats[a] - nats[b]
        lines.append(f"{a} - {b}: {diff.mean():+.2f} ± {diff.std() / math.sqrt(len(diff)):.2f} nats "
                     f"(IWAE k={k}, {len(diff)} images; {a} lower on {int((diff < 0).sum())})")
    return lines


def samples(run: Run, n: int, data_dir: str | None) -> dict:
    entry = genlab.evaluate(run.path, n=n, data_dir=data_dir, likelihood=False, memorization=False)
    return {**entry["scores"], "samples_per_sec": entry["speed"]["samples_per_sec"]}


def train(name: str, data: str, out: Path, minutes: float, data_dir: str | None, seed: int, reuse: bool) -> Run:
    if reuse and (out / "checkpoints").exists():
        return Run(out)
    if name == "vqvae":
        auto = genlab.train("vqvae", data, out=out.with_name(out.name + "-autoencoder"), minutes=minutes / 2,
                            data_dir=data_dir, seed=seed, overwrite=True, progress=False)
        return genlab.train("vqvae-prior", data, out=out, minutes=minutes / 2, data_dir=data_dir, seed=seed,
                            overwrite=True, progress=False, model_config={"autoencoder": str(auto.path)})
    spec = MODELS[name]
    config = dict(spec["config"])
    if name in WARMUP_SHARE:
        probe = genlab.train(spec["model"], data, out=out.with_name(out.name + "-probe"), minutes=PROBE_MINUTES,
                             data_dir=data_dir, seed=seed, overwrite=True, progress=False, model_config=config)
        per_minute = probe.info()["step"] / PROBE_MINUTES
        config["kl_warmup_steps"] = max(1, int(WARMUP_SHARE[name] * per_minute * minutes))
        print(f"{name}: {per_minute:.0f} steps/minute in a {PROBE_MINUTES:g}-minute probe; KL warm-up "
              f"{config['kl_warmup_steps']} steps", flush=True)
    return genlab.train(spec["model"], data, out=out, minutes=minutes, data_dir=data_dir, seed=seed, overwrite=True,
                        progress=False, model_config=config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vae,hvae,vqvae", help=f"comma-separated, of {', '.join([*MODELS, 'vqvae'])}")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="mnist", help="mnist for the published comparison (digits: a smoke run)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/vae-bench")
    parser.add_argument("-n", type=int, default=5000, help="samples per sample-quality evaluation")
    parser.add_argument("--iwae-k", type=int, default=1000)
    parser.add_argument("--likelihood-n", type=int, default=1000, help="validation images for the bounds")
    parser.add_argument("--reuse", action="store_true", help="score runs already in --out instead of training")
    args = parser.parse_args()
    rows, runs = [], {}
    for name in [m for m in args.models.split(",") if m]:
        run = runs[name] = train(name, args.data, Path(args.out) / name, args.minutes, args.data_dir, args.seed,
                                 args.reuse)
        row = {"name": name, "steps": run.info()["step"], **samples(run, args.n, args.data_dir)}
        if name != "vqvae":
            row.update(likelihood(run, args.iwae_k, args.likelihood_n, args.data_dir))
        rows.append(row)
        print(name + ": " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)), flush=True)

    def fmt(row: dict, key: str, spec: str, se: str | None = None) -> str:
        if key not in row:
            return "-"
        return spec.format(row[key]) + (f" ± {row[se]:.2f}" if se and se in row else "")

    print(f"\n{args.data}, {args.minutes:g} minutes of training each; bounds on {args.likelihood_n} validation images "
          f"(IWAE k={args.iwae_k}); {args.n} samples per evaluation\n")
    print("| model | IWAE NLL (nats) | ELBO (nats) | bits/dim | FID | precision | recall | samples/s | steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {fmt(r, 'iwae', '{:.2f}', 'iwae_se')} | {fmt(r, 'elbo', '{:.2f}', 'elbo_se')} | "
              f"{fmt(r, 'bits_per_dim', '{:.4f}')} | {fmt(r, 'fid', '{:.2f}')} | {fmt(r, 'precision', '{:.3f}')} | "
              f"{fmt(r, 'recall', '{:.3f}')} | {fmt(r, 'samples_per_sec', '{:.0f}')} | {r['steps']} |")
    print("\nvae-logistic's bounds are of 8-bit images (nats per 256-level image), the others' of binarised ones.")
    for line in paired(runs, args.iwae_k, args.likelihood_n, args.seed, args.data_dir):
        print(line)


if __name__ == "__main__":
    main()
