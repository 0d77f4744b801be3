"""Training steps per second of each model's default config, and the steps a time budget buys.

    python benchmarks/train_throughput.py --data mnist --data-dir ../shared/data/mnist [--seconds 30] [--budget-minutes 10]

Run it on an otherwise idle machine: on a 2-core CPU, another busy process slows PyTorch's OpenMP
threads far more than 2x.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import genlab
from genlab.registry import model_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", default="vae,dcgan,ddpm")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed training per model")
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    args = parser.parse_args()
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads: {torch.get_num_threads()}, data: {args.data}")
    print(f"{'model':<8} {'params':>10} {'batch':>6} {'steps/s':>8} {'samples/s':>10} {'steps in ' + str(args.budget_minutes) + ' min':>16}")
    for name in args.models.split(","):
        assert name in model_names(), name
        with tempfile.TemporaryDirectory() as tmp:
            # a short warm-up run, then the timed one resumes it (allocator and caches are warm)
            run = genlab.train(name, args.data, out=f"{tmp}/run", steps=10, data_dir=args.data_dir, progress=False,
                               sample_every=0, checkpoint_every=0)
            start_step = run.info()["step"]
            start = time.perf_counter()
            run = genlab.train(resume=f"{tmp}/run", minutes=args.seconds / 60, progress=False)
            seconds = time.perf_counter() - start
            info = run.info()
            rate = (info["step"] - start_step) / seconds
            batch = info["effective_batch_size"]
            print(f"{name:<8} {info['parameters']:>10,} {batch:>6} {rate:>8.2f} {rate * batch:>10.0f} "
                  f"{int(rate * args.budget_minutes * 60):>16}")


if __name__ == "__main__":
    main()
