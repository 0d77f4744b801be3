"""What guidance buys and costs: conditional accuracy against FID, precision and recall, per scale.

    python benchmarks/guidance.py runs/ddpm-mnist --classifier runs/noise-classifier-mnist --scales 0,1,2,4
    python benchmarks/guidance.py runs/ddpm-mnist-label --scales 1,2,3      # classifier-free guidance

Each scale is one `genlab eval` of n samples, every class equally often: "conditional accuracy" is the
share the evaluation's feature network reads as the class asked for. With --classifier the scale is
classifier guidance's (0: unguided, then accuracy is chance for an unconditional run); without, it is
classifier-free guidance's (1: the plain conditional model). Guided sampling costs network calls: the
samples/s column says how much (classifier guidance adds a classifier forward and backward per call).
"""

from __future__ import annotations

import argparse

from genlab.eval.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--classifier", default=None, help="noise-classifier run (classifier guidance)")
    parser.add_argument("--scales", default="0,1,2,4")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--sampler", default="dpm++")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    kind = "classifier guidance" if args.classifier else "classifier-free guidance"
    print(f"{args.run}: {kind}, {args.sampler} {args.steps} steps, {args.n} samples per scale")
    print(f"{'scale':>6} {'cond. acc.':>10} {'FID':>7} {'precision':>9} {'recall':>7} {'samples/s':>10}")
    for scale in (float(s) for s in args.scales.split(",")):
        entry = evaluate(args.run, n=args.n, sampler=args.sampler, steps=args.steps, guidance=scale,
                         classifier=args.classifier, data_dir=args.data_dir, likelihood=False, memorization=False)
        s = entry["scores"]
        print(f"{scale:>6g} {s.get('conditional_accuracy', float('nan')):>10.3f} {s['fid']:>7.2f} {s['precision']:>9.3f} "
              f"{s['recall']:>7.3f} {entry['speed']['samples_per_sec']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
