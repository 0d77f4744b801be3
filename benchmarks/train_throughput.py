"""Training steps per second of each model's default config, and the steps a time budget buys.

    python benchmarks/train_throughput.py --data mnist --data-dir ../shared/data/mnist [--seconds 30] [--repeats 3]

Run it on an otherwise idle machine: on a 2-core CPU, another busy process slows PyTorch's OpenMP
threads far more than 2x. Even idle, 20-second windows vary by 10-20% from one to the next here, so
`--repeats` times several windows and prints the median and the range; compare two versions of genlab
by running both, alternately, with the same settings (it only uses `genlab.train` and `Run.info`, so it
runs against older checkouts too: PYTHONPATH=OLD/src python benchmarks/train_throughput.py).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import genlab
from genlab.registry import model_names


def steps_per_second(name: str, data: str, data_dir: str | None, seconds: float, tmp: str) -> tuple[float, dict]:
    # a short warm-up run, then the timed one resumes it (allocator and caches are warm)
    run = genlab.train(name, data, out=f"{tmp}/run", steps=10, data_dir=data_dir, progress=False,
                       sample_every=0, checkpoint_every=0, overwrite=True)
    start_step = run.info()["step"]
    start = time.perf_counter()
    run = genlab.train(resume=f"{tmp}/run", minutes=seconds / 60, progress=False)
    elapsed = time.perf_counter() - start
    info = run.info()
    return (info["step"] - start_step) / elapsed, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", default="vae,dcgan,ddpm")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed training per model and repeat")
    parser.add_argument("--repeats", type=int, default=1, help="timed windows per model (median and range)")
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    args = parser.parse_args()
    print(f"genlab {genlab.__file__}")
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads: {torch.get_num_threads()}, "
          f"data: {args.data}, {args.repeats} x {args.seconds:g} s per model")
    print(f"{'model':<8} {'params':>10} {'batch':>6} {'steps/s':>8} {'range':>13} {'samples/s':>10} "
          f"{'steps in ' + str(args.budget_minutes) + ' min':>16}")
    for name in args.models.split(","):
        assert name in model_names(), name
        rates = []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                rate, info = steps_per_second(name, args.data, args.data_dir, args.seconds, tmp)
                rates.append(rate)
        rate, batch = statistics.median(rates), info["effective_batch_size"]
        spread = f"{min(rates):.2f}-{max(rates):.2f}"
        print(f"{name:<8} {info['parameters']:>10,} {batch:>6} {rate:>8.2f} {spread:>13} {rate * batch:>10.0f} "
              f"{int(rate * args.budget_minutes * 60):>16}", flush=True)


if __name__ == "__main__":
    main()
