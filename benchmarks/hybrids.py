"""The hybrids at 1, 2 and 4 network evaluations, beside the families they join, on the trilemma.

    python benchmarks/hybrids.py --data-dir ../shared/data/mnist --minutes 10 --out runs/hybrids \
        [--steps 1,2,4] [--distill 6 --students 4,2,1 --round-steps 400,300,200 --adversarial-weight 0.01] [--compare runs/dcgan,runs/vae,runs/ddpm] [-n 5000]

Each `ddgan` run (denoising diffusion GAN, Xiao et al. 2022) is trained for the same minutes with
`num_steps` = 1, 2 and 4: its sampling takes exactly that many generator calls. Every run, the hybrids and
the `--compare` runs (each already trained for the same minutes and already evaluated or not), is scored by
`genlab eval` at its best checkpoint (FID, precision, recall, coverage, samples/s; no likelihood), and
`genlab report` draws them all on one trilemma plot (`OUT/report.html`, `OUT/report-trilemma.png`).

`--distill TEACHER_MINUTES` adds progressive distillation at equal total minutes: one DDPM teacher trained
that long, then one `genlab distill` student per step count of `--students` (4, 2, 1) for the rest of
`--minutes` each, every one from the teacher's DDIM 16 (16 -> 8 -> 4 ...). Each student's rounds but the
last take their entry of `--round-steps` (default 400, 300, 200: with about 1,200 student steps in 4
minutes on 2 cores, the last round, which goes on until time is up, gets about twice the others). The last
round's length did not matter beyond seed noise here: 2 steps from a 6-minute teacher, 4 minutes, DDIM 2,
5,000 samples: rounds of 300 / 300 / ~600 steps gave recall 0.909 and 0.882 (seeds 0, 1), 410 / 410 / ~350
gave 0.896, 8 -> 4 -> 2 in 600 / ~550 gave 0.892, and a cosine learning-rate decay 0.899 and 0.884, all at
precision 0.77-0.79.
On a faster host (2026-12-02, 6-minute teacher ~4,400-4,700 steps, 2-step student ~1,650-1,930 steps,
rounds 300 / 300 / rest): recall 0.925, 0.920, 0.903 and precision 0.789, 0.804, 0.821 over seeds 0-2, against
the 10-minute DDPM's DDIM-50 0.806 / 0.963 in the same session (bar: recall >= 0.913).
A 5 / 5 split (2026-12-03, `--distill 5 --students 2 --round-steps 300`, teacher ~3,400-3,700 steps, student
1,667-2,384): recall 0.919, 0.901, 0.903 and precision 0.772, 0.797, 0.801 over seeds 0-2, against DDIM-50
0.806 / 0.964 (bar: recall >= 0.914), so the split did not help. Stochastic DDIM at the 2 steps trades the
other way: eta 0.5 gave recall 0.909, 0.893, 0.885 (precision 0.78-0.82), eta 1 recall 0.72-0.75
(precision 0.87-0.89). A batch-32 student of seed 1's teacher (`genlab distill TEACHER --student-steps 2
--round-steps 600 --minutes 5 --batch-size 32`, 3,247 steps) gave recall 0.905 and precision 0.784, against
0.901 / 0.797 at batch 64: no gain beyond seed noise.
The adversarial term (2026-12-04, a slower host: teachers 2,600-3,000 steps, `--distill 5 --students 2
--round-steps 300 --adversarial-weight 0.01`, seeds 0-2) lifted recall past the bar on every seed once its
discriminator had R1 (gamma 0.1): recall 0.924, 0.917, 0.923, precision 0.761, 0.764, 0.757, FID 4.16,
4.75, 4.90 (students of 1,013, 938, 891 steps: the penalty's second backward costs a quarter of them).
Without R1: recall 0.927, 0.928, 0.882, precision 0.765, 0.771, 0.787, FID 4.01, 4.34, 5.60; on seed 2
the discriminator won outright (d_loss 0.08, generator loss 6.4) and pushed the student off its
teacher (distillation loss 0.012 against 0.003).

The bar (issue 12): a hybrid on the Pareto front that matches the DDPM's DDIM-50 precision and recall
within 0.05 at 1-2 network evaluations, at a sampling speed within 10x of the DCGAN's. A diffusion run of
`--compare` is scored with `--compare-sampler` (default ddim:50, the bar's reference).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import genlab
from genlab.eval.report import make_report
from genlab.registry import get_model_class
from genlab.runs import Run
from genlab.train import checkpoint as ckpt

COLUMNS = [("fid", "FID", "{:.2f}"), ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
           ("coverage", "coverage", "{:.3f}"), ("classes_covered", "classes", "{:.0f}")]


def score(run: Run, n: int, data_dir: str | None, checkpoint: str | None = None, **options) -> dict:
    which = checkpoint or ("best" if ckpt.resolve(run.checkpoints, "best", must_exist=False) else "latest")
    entry = genlab.evaluate(run.path, n=n, data_dir=data_dir, checkpoint=which, likelihood=False, memorization=False,
                            **options)
    model = run.load_model(which, device="cpu")
    calls = model.network_calls(**model.sample_options(**options))
    return {**entry["scores"], "samples_per_sec": entry["speed"]["samples_per_sec"], "calls": calls,
            "checkpoint": which, "steps": model.checkpoint_step}  # the scored checkpoint's, not the run's last


def print_scores(name: str, row: dict) -> None:
    print(f"{name}: " + ", ".join(f"{k} {row[k]:.4g}" for k, _, _ in COLUMNS if k in row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1,2,4", help="ddgan step counts (one run each); empty: none")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/hybrids")
    parser.add_argument("-n", type=int, default=5000, help="samples per evaluation")
    parser.add_argument("--compare", default="", help="comma-separated runs of other families to score beside them")
    parser.add_argument("--compare-sampler", default="ddim:50", help="SAMPLER:STEPS for the diffusion runs of --compare")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="ddgan override, as in genlab train --set")
    parser.add_argument("--distill", type=float, default=0.0, metavar="TEACHER_MINUTES",
                        help="also train a DDPM teacher this many minutes and distil it for the rest of --minutes, "
                             "one student per --students step count")
    parser.add_argument("--students", default="4,2,1", help="the distilled students' step counts (one run each)")
    parser.add_argument("--round-steps", default="400,300,200",
                        help="per student of --students: training steps of every round but the last")
    parser.add_argument("--adversarial-weight", type=float, default=0.0,
                        help="the distilled students' adversarial term (genlab distill --adversarial-weight); 0: none")
    parser.add_argument("--reuse", action="store_true", help="score runs already in --out instead of training")
    args = parser.parse_args()
    out = Path(args.out)
    rows: dict[str, dict] = {}
    sources: list[Path] = []
    if args.distill:
        teacher = out / "ddpm-teacher"
        students = [int(k) for k in args.students.split(",") if k]
        round_steps = [int(r) for r in args.round_steps.split(",") if r]
        if len(round_steps) != len(students):
            parser.error(f"--round-steps needs one entry per student of --students ({len(students)})")
        if not (args.reuse and (teacher / "checkpoints").exists()):
            # v prediction, so that the student starts as an exact copy of its teacher (Salimans & Ho's setting)
            genlab.train("ddpm", args.data, out=teacher, minutes=args.distill, data_dir=args.data_dir, seed=args.seed,
                         overwrite=True, progress=False, model_config={"prediction": "v"})
        for k, rounds in zip(students, round_steps):
            student = out / f"distilled-{k}step"
            if not (args.reuse and (student / "checkpoints").exists()):
                genlab.distill(teacher, student_steps=k, teacher_steps=16, round_steps=rounds, out=student,
                               adversarial_weight=args.adversarial_weight,
                               minutes=args.minutes - args.distill, overwrite=True, progress=False, seed=args.seed)
            run = Run(student)
            model = run.load_model("latest", device="cpu")
            if model.current_steps != k:
                print(f"{student.name}: training stopped in the {model.current_steps}-step round; "
                      f"give it shorter --round-steps")
                continue
            row = score(run, args.n, args.data_dir, checkpoint="latest")
            rows[f"distilled, {k} step(s)"] = row
            print_scores(student.name, row)
            sources.append(student)
    for steps in (int(s) for s in args.steps.split(",") if s):
        path = out / f"ddgan-{steps}step"
        if not (args.reuse and (path / "checkpoints").exists()):
            genlab.train("ddgan", args.data, out=path, minutes=args.minutes, data_dir=args.data_dir, seed=args.seed,
                         overwrite=True, progress=False, overrides=[f"num_steps={steps}", *args.overrides])
        rows[path.name] = score(Run(path), args.n, args.data_dir)
        print_scores(path.name, rows[path.name])
    sampler, _, sampler_steps = args.compare_sampler.partition(":")
    for path in [Path(p) for p in args.compare.split(",") if p]:
        run = Run(path)
        diffusion = get_model_class(run.model_name).family == "diffusion"
        options = {"sampler": sampler, **({"steps": int(sampler_steps)} if sampler_steps else {})} if diffusion else {}
        rows[f"{run.model_name} ({path.name})"] = score(run, args.n, args.data_dir, **options)
    print(f"\n{args.data}, {args.minutes:g} minutes of training each, {args.n} samples per evaluation\n")
    print("| run | network calls | " + " | ".join(h for _, h, _ in COLUMNS) + " | samples/s | training steps |")
    print("|" + "---|" * (len(COLUMNS) + 4))
    for name, r in rows.items():
        cells = [f.format(r[k]) if k in r else "-" for k, _, f in COLUMNS]
        print(f"| {name} | {r['calls']} | " + " | ".join(cells) + f" | {r['samples_per_sec']:.0f} | {r['steps']} |")
    sources += [out / f"ddgan-{s}step" for s in args.steps.split(",") if s] + [Path(p) for p in args.compare.split(",") if p]
    title = f"hybrids beside the families: {args.data}, {args.minutes:g} minutes each"
    report = make_report(sources, out / "report.html", title=title)
    print(f"\nreport: {report}")


if __name__ == "__main__":
    main()
