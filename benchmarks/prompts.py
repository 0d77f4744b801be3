"""Prompt adherence of a caption-conditioned run: how much the prompt controls, word by word.

    python benchmarks/prompts.py runs/ddpm-mnist-text [-n 200] [--guidance 3] [--sampler dpm++ --steps 10]

For each prompt: the share of samples drawn under it whose class (the evaluation's feature network)
and measured thickness, size and slant (the run's own caption rule) all match what the prompt names,
against the same share among samples drawn with no caption. The prompts cover the class alone, each
property alone, and combinations.
"""

from __future__ import annotations

import argparse

from genlab.eval.adherence import prompt_adherence
from genlab.runs import Run

PROMPTS = ["a three", "a seven", "a zero", "a thick one", "a thin eight", "a small two", "a large five",
           "a right-leaning one", "a left-leaning seven", "a thin upright three", "a thick right-leaning four",
           "a large thick zero"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--sampler", default="dpm++")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompts", default=None, help="prompts separated by ';' (default: a fixed set)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    prompts = args.prompts.split(";") if args.prompts else PROMPTS
    result = prompt_adherence(Run(args.run), prompts, n=args.n, guidance=args.guidance, data_dir=args.data_dir,
                              sampler=args.sampler, steps=args.steps)
    print(f"{args.run}: {args.n} samples per prompt, guidance {args.guidance:g}, {args.sampler} {args.steps} steps")
    print(f"{'prompt':<28} {'prompted':>9} {'unprompted':>11}")
    for prompt, shares in result.items():
        print(f"{prompt:<28} {shares['prompted']:>9.3f} {shares['unprompted']:>11.3f}")
    mean = {k: sum(s[k] for s in result.values()) / len(result) for k in ("prompted", "unprompted")}
    print(f"{'mean':<28} {mean['prompted']:>9.3f} {mean['unprompted']:>11.3f}")


if __name__ == "__main__":
    main()
