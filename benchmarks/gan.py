"""Every image GAN trained the same minutes on mnist, each scored by `genlab eval` at its best checkpoint.

    python benchmarks/gan.py --data-dir ../shared/data/mnist --minutes 10 --out runs/gan-bench \
        [--models gan,dcgan,wgan-gp,sagan,stylegan,cgan] [--seeds 0] [--compare runs/ddpm-mnist,runs/vae-mnist]

One model at a time (on two cores a second busy process slows both by an order of magnitude). Each
run evaluates every 1000 steps during training and keeps its best checkpoint by FID (the GAN default),
so a late-training collapse does not cost the result. The table: FID, precision, recall, coverage,
class entropy (log 10 = 2.303 when every digit is equally frequent), classes covered, samples/s at
batch 500, training steps. `--compare` adds already trained runs (a DDPM, a VAE of the same minutes)
scored with the same protocol; a diffusion run is scored with its own sampler, or the one
`--compare-sampler dpm++:10` names. cgan learns from the labels: compare it with a DDPM trained on them
too (`genlab train ddpm --condition label`), which evaluation also samples over every class equally. With
several `--seeds`, each cell is the mean and, in brackets, the spread (max - min).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import genlab
from genlab.registry import get_model_class
from genlab.runs import Run
from genlab.train import checkpoint as ckpt

CONDITIONAL = {"cgan"}  # trained with --condition label; evaluated over every class equally
COLUMNS = [("fid", "FID", "{:.2f}"), ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
           ("coverage", "coverage", "{:.3f}"), ("class_entropy", "class H", "{:.3f}"),
           ("classes_covered", "classes", "{:.0f}")]


def score(run: Run, n: int, data_dir: str | None, **options) -> dict:
    which = "best" if ckpt.resolve(run.checkpoints, "best", must_exist=False) else "latest"
    entry = genlab.evaluate(run.path, n=n, data_dir=data_dir, checkpoint=which, likelihood=False, memorization=False,
                            **options)
    out = dict(entry["scores"])
    out["samples_per_sec"] = entry["speed"]["samples_per_sec"]
    out["checkpoint"] = which
    return out


def cell(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ({fmt.format(max(values) - min(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gan,dcgan,wgan-gp,sagan,stylegan,cgan")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/gan-bench")
    parser.add_argument("-n", type=int, default=10_000, help="samples per evaluation")
    parser.add_argument("--compare", default="", help="comma-separated runs to score beside the GANs")
    parser.add_argument("--compare-sampler", default="",
                        help="SAMPLER:STEPS for the diffusion runs of --compare (e.g. dpm++:10); default: each "
                             "run's own, which for runs saved before DPM++ became the default is the 1000-step chain")
    parser.add_argument("--set", action="append", default=[], help="MODEL:key=value model override")
    parser.add_argument("--reuse", action="store_true", help="score runs already in --out instead of training")
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {}
    for name in [m for m in args.models.split(",") if m]:
        overrides = [s.split(":", 1)[1] for s in args.set if s.split(":", 1)[0] == name]
        for seed in (int(s) for s in args.seeds.split(",")):
            out = Path(args.out) / f"{name}-seed{seed}"
            if not (args.reuse and (out / "checkpoints").exists()):
                genlab.train(name, args.data, out=out, minutes=args.minutes, data_dir=args.data_dir, seed=seed,
                             overwrite=True, progress=False, overrides=overrides,
                             condition="label" if name in CONDITIONAL else None)
            run = Run(out)
            result = score(run, args.n, args.data_dir)
            result["steps"] = run.info()["step"]
            rows.setdefault(name, []).append(result)
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {result[k]:.4g}" for k, _, _ in COLUMNS if k in result)
                  + f", {result['samples_per_sec']:.0f} samples/s, {result['steps']} steps ({result['checkpoint']})",
                  flush=True)
    compare_options = {}
    if args.compare_sampler:
        sampler, _, steps = args.compare_sampler.partition(":")
        compare_options = {"sampler": sampler, **({"steps": int(steps)} if steps else {})}
    for path in [p for p in args.compare.split(",") if p]:
        run = Run(path)
        diffusion = get_model_class(run.model_name).family == "diffusion"
        result = score(run, args.n, args.data_dir, **(compare_options if diffusion else {}))
        result["steps"] = run.info()["step"]
        rows[f"{run.model_name} ({Path(path).name})"] = [result]
    print(f"\n{args.data}, {args.minutes:g} minutes of training each, {args.n} samples per evaluation\n")
    print("| model | " + " | ".join(h for _, h, _ in COLUMNS) + " | samples/s | steps |")
    print("|" + "---|" * (len(COLUMNS) + 3))
    for name, results in rows.items():
        cells = [cell([r[k] for r in results if k in r], f) if all(k in r for r in results) else "-" for k, _, f in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + f" | {cell([r['samples_per_sec'] for r in results], '{:.0f}')} | "
              f"{cell([r['steps'] for r in results], '{:.0f}')} |")


if __name__ == "__main__":
    main()
