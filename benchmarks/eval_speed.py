"""Time `genlab.evaluate` on 10,000 samples, sampling excluded (the issue's aim: under a minute on 2 CPU cores).

    python benchmarks/eval_speed.py                                   # MNIST from ../shared/data/mnist
    python benchmarks/eval_speed.py --data digits --n 2000 --threads 1

The samples are real images with a little noise: sampling is excluded by design, and what the measures
cost does not depend on what the images show. A fresh cache is used, so the first call includes training
the feature network and computing the reference statistics (paid once per protocol); the figure that
counts is the second, warm call. Every stage's seconds are printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist")
    p.add_argument("--data-dir", default=str(here.parent / "shared" / "data" / "mnist"))
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["GENLAB_CACHE"] = tempfile.mkdtemp(prefix="genlab-bench-")  # cold start, then warm

    import genlab
    from genlab.data import load_dataset

    ds = load_dataset(args.data, data_dir=args.data_dir if args.data != "digits" else None)
    pool = torch.cat([ds.x_train, ds.x_val])
    idx = torch.arange(args.n) % len(pool)
    noise = 0.05 * torch.randn(args.n, *ds.shape, generator=torch.Generator().manual_seed(0))
    samples = (pool[idx] + noise).clamp(-1, 1)
    print(f"{args.n} samples of shape {tuple(ds.shape)} against {args.data} ({len(ds.x_train)} train / "
          f"{len(ds.x_val)} val), {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs visible")
    for label in ("cold (trains the feature network, computes the reference)", "warm (the figure)"):
        t0 = time.perf_counter()
        e = genlab.evaluate(samples, data=args.data, data_dir=args.data_dir if args.data != "digits" else None,
                            write=False)
        total = time.perf_counter() - t0
        stages = ", ".join(f"{k} {v:.2f}" for k, v in e["timings"].items())
        print(f"{label}: {total:.1f} s total | {stages}")
    s = e["scores"]
    print(f"scores: FID {s['fid']:.3f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
          f"coverage {s['coverage']:.3f}  memorised {s['memorized_share']:.4f}")
    print(f"features: {e['features']['name']} ({100 * e['features']['accuracy']:.1f}% held-out accuracy), "
          f"reference {e['protocol']['reference_size']} items")


if __name__ == "__main__":
    main()
