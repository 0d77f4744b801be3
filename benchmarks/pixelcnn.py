"""Test bits/dim of a gated PixelCNN on 8-bit MNIST after N minutes, beside the VAE's and the DDPM's bounds.

    python benchmarks/pixelcnn.py --data mnist --data-dir ../shared/data/mnist            # 10 min each
    python benchmarks/pixelcnn.py --data-dir ../shared/data/mnist --vae runs/vae-mnist --ddpm runs/ddpm-mnist
    python benchmarks/pixelcnn.py --data-dir ../shared/data/mnist --minutes 0.5 --baseline-minutes 0.5  # smoke

Trains `pixelcnn` (its default config and training settings) for --minutes, and a VAE and a DDPM for
--baseline-minutes each unless runs of them are given, all on the same data; then measures every run
on the same held-out images with `genlab.eval.likelihood` (the runs' EMA weights). PixelCNN's figure is
the exact negative log-likelihood of the 8-bit images; the VAE's (negative ELBO) and the DDPM's
(variational bound, 100 stratified timesteps) are upper bounds on theirs, so an exact figure below
them is a better model of the data, while a bound below an exact figure would not say the opposite
for certain. Writes samples and top-half completions of held-out digits beside the PixelCNN run.

Published figures (different data, binarisation and compute; see the notes printed with them):
- PixelCNN, binarised MNIST: 81.30 nats per image (van den Oord et al. 2016a, "Pixel Recurrent Neural
  Networks"); 0.150 bits/dim over 784 binary pixels.
- Gated PixelCNN: 3.03 bits/dim on CIFAR-10, 3.83 on ImageNet 32x32, 3.57 on 64x64 (van den Oord et
  al. 2016b, "Conditional Image Generation with PixelCNN Decoders"); PixelCNN++ 2.92 on
  CIFAR-10 (Salimans et al. 2017). The gated paper reports no MNIST figure.
- Flows on uniformly dequantised 8-bit MNIST: Real NVP 1.06, Glow 1.05, FFJORD 0.99 bits/dim (as
  tabulated by Grathwohl et al. 2019, "FFJORD"); a dequantised density gives a lower bound on
  the discrete log-likelihood, so these compare with an 8-bit exact figure like ours.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

PUBLISHED = [
    ("PixelCNN (van den Oord 2016a)", "binarised MNIST", "81.30 nats/image = 0.150 bits/dim",
     "1 bit per pixel, not 8: not comparable in size; 60k training images, GPU days"),
    ("Gated PixelCNN (van den Oord 2016b)", "CIFAR-10 / ImageNet 32", "3.03 / 3.83 bits/dim",
     "colour natural images, 50k / 1.2M training images, GPU training; no MNIST figure"),
    ("PixelCNN++ (Salimans 2017)", "CIFAR-10", "2.92 bits/dim", "colour natural images, GPU training"),
    ("Real NVP / Glow / FFJORD (Grathwohl 2019)", "dequantised 8-bit MNIST", "1.06 / 1.05 / 0.99 bits/dim",
     "same 8-bit data, 60k training images, GPU training; ours: 9k if only the test split is present"),
]


def train_or_open(model: str, given: str | None, minutes: float, root: Path, data: str, data_dir: str | None):
    import genlab
    from genlab.runs import Run

    if given:
        return Run(given)
    print(f"training {model} for {minutes:g} min into {root / model} ...", flush=True)
    # no preview grids: a PixelCNN's 64 samples take seconds each time, and none are measured here
    return genlab.train(model, data, out=root / model, minutes=minutes, data_dir=data_dir, sample_every=0,
                        progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--minutes", type=float, default=10.0, help="PixelCNN training minutes")
    parser.add_argument("--baseline-minutes", type=float, default=None,
                        help="VAE and DDPM training minutes (default: --minutes)")
    parser.add_argument("--pixelcnn", default=None, help="an existing pixelcnn run instead of training one")
    parser.add_argument("--vae", default=None, help="an existing vae run on the same data")
    parser.add_argument("--ddpm", default=None, help="an existing ddpm run on the same data")
    parser.add_argument("--out", default=None, help="directory for the new runs (default: a temporary one)")
    parser.add_argument("-n", type=int, default=1000, help="held-out images measured")
    args = parser.parse_args()

    from genlab.apps.complete import complete
    from genlab.data import load_dataset
    from genlab.eval.likelihood import held_out_bits_per_dim
    from genlab.imageio import save_grid

    needed = not (args.pixelcnn and args.vae and args.ddpm)
    root = Path(args.out or (tempfile.mkdtemp(prefix="genlab-bench-pixelcnn-") if needed else "."))
    baseline = args.minutes if args.baseline_minutes is None else args.baseline_minutes
    data = load_dataset(args.data, data_dir=args.data_dir)
    print(f"{args.data}: {data.train_size()} training images, {len(data.x_val)} held out; {data.describe()}")
    start = time.perf_counter()
    runs = {"pixelcnn": train_or_open("pixelcnn", args.pixelcnn, args.minutes, root, args.data, args.data_dir),
            "vae": train_or_open("vae", args.vae, baseline, root, args.data, args.data_dir),
            "ddpm": train_or_open("ddpm", args.ddpm, baseline, root, args.data, args.data_dir)}
    print(f"runs ready in {(time.perf_counter() - start) / 60:.1f} min\n")

    held_out = data.x_val[: args.n]
    print(f"{'model':<10} {'bits/dim':>9} {'± s.e.':>7} {'kind':<6} {'steps':>6} {'train min':>9} {'parameters':>11}")
    bits = {}
    for name, run in runs.items():
        info = run.info()
        # the same first n held-out images for every run, unlabelled (the runs here are unconditional)
        result = held_out_bits_per_dim(run.load_model(), held_out, n=args.n, seed=0)
        bits[name] = result["bits_per_dim"]
        print(f"{name:<10} {result['bits_per_dim']:>9.4f} {result['std_error']:>7.4f} {result['kind']:<6} "
              f"{info['step']:>6} {info['train_seconds'] / 60:>9.1f} {info['parameters']:>11,}", flush=True)
    dims = math.prod(data.spec.shape)
    below = all(bits["pixelcnn"] < bits[b] for b in ("vae", "ddpm"))
    print(f"\nPixelCNN: {bits['pixelcnn'] * dims * math.log(2):.1f} nats per 8-bit image, exact; "
          f"{'below' if below else 'NOT below'} both bounds (VAE {bits['vae']:.4f}, DDPM {bits['ddpm']:.4f})")
    pixelcnn = runs["pixelcnn"]

    print("\npublished figures (not measured here):")
    for model, data_name, figure, differs in PUBLISHED:
        print(f"  {model:<48} {data_name:<24} {figure:<34} {differs}")

    samples = pixelcnn.sample(16, seed=0)
    save_grid(samples, pixelcnn.path / "bench-samples.png", nrow=8)
    completion = complete(pixelcnn, held_out[:4], keep="top-half", n=4, seed=0)
    save_grid(completion.grid_rows(), pixelcnn.path / "bench-completions.png", nrow=6)
    print(f"\nsamples: {pixelcnn.path / 'bench-samples.png'}")
    print(f"completions (original, top half kept, 4 completions): {pixelcnn.path / 'bench-completions.png'}")


if __name__ == "__main__":
    main()
