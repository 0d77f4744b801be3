"""Quality against network evaluations for every sampler of one trained diffusion or flow run.

    python benchmarks/samplers.py runs/ddpm-mnist [-n 2000] [--steps 5,10,20,50] [--samplers ddim,euler,heun,dpm++]

For each sampler and step count: `genlab eval`'s FID, precision and recall on n samples (same seed,
same reference), the network evaluations per sample (Heun makes two a step but the last), and
samples/s. Samplers the run does not have are skipped. Run it on an idle machine: the samples/s
column is a timing.
"""

from __future__ import annotations

import argparse

from genlab.eval.evaluate import evaluate_steps
from genlab.runs import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--steps", default="5,10,20,50")
    parser.add_argument("--samplers", default="ddim,euler,heun,dpm++")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    run = Run(args.run)
    model = run.load_model()
    steps = [int(s) for s in args.steps.split(",")]
    print(f"{args.run} ({run.model_name}), {args.n} samples per point, precision {args.precision}")
    print(f"{'sampler':<8} {'steps':>5} {'NFE':>5} {'FID':>7} {'precision':>9} {'recall':>7} {'samples/s':>10}")
    for sampler in args.samplers.split(","):
        if sampler not in model.samplers:
            print(f"{sampler:<8} (not a sampler of {run.model_name})")
            continue
        entries = evaluate_steps(run, n=args.n, steps=steps, sampler=sampler, data_dir=args.data_dir, likelihood=False,
                                 memorization=False, precision=args.precision)
        for s, entry in zip(steps, entries):
            scores, nfe = entry["scores"], model.network_calls(sampler=sampler, steps=s)
            print(f"{sampler:<8} {s:>5} {nfe:>5} {scores['fid']:>7.2f} {scores['precision']:>9.3f} {scores['recall']:>7.3f} "
                  f"{entry['speed']['samples_per_sec']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
