"""Samples/second of trained runs, after warm-up, in inference mode.

    python benchmarks/sampling_speed.py runs/vae-mnist runs/dcgan-mnist runs/ddpm-mnist [-n 256]

Diffusion runs are timed with the full ancestral chain and with DDIM at 50 and 20 steps.
"""

from __future__ import annotations

import argparse

import torch

from genlab.demo import time_sampling
from genlab.runs import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("-n", type=int, default=256, help="samples per timed batch")
    args = parser.parse_args()
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads: {torch.get_num_threads()}, batch: {args.n}")
    print(f"{'run':<28} {'params':>10} {'steps':>7} {'sampler':<22} {'samples/s':>10}")
    for path in args.runs:
        run = Run(path)
        info = run.info()
        model = run.load_model()
        settings = [("one pass", {})]
        if model.sample_options().get("sampler") == "ddpm":
            settings = [(f"ancestral {model.config.num_timesteps}", {"sampler": "ddpm"}),
                        ("DDIM 50", {"sampler": "ddim", "steps": 50}), ("DDIM 20", {"sampler": "ddim", "steps": 20})]
        for name, opts in settings:
            rate = time_sampling(run, args.n, **opts)
            print(f"{path:<28} {info['parameters']:>10,} {info['step']:>7} {name:<22} {rate:>10.1f}")


if __name__ == "__main__":
    main()
