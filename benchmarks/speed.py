"""Training and sampling speed of every registered model in fp32, bf16, compiled and compiled bf16,
and a check that the precision choice does not cost quality.

    python benchmarks/speed.py throughput --data mnist --data-dir ../shared/data/mnist [--seconds 30]
    python benchmarks/speed.py sampling runs/ddpm-mnist runs/vae-mnist [-n 500] [--repeats 3]
    python benchmarks/speed.py quality --data mnist --data-dir ../shared/data/mnist --minutes 10 --out bench

`throughput` trains each model's default config for --seconds per mode and prints steady-state
steps/s (the first step, which compiles, is left out; its time is printed as the compile cost), then
times sampling of that run with each of the model's sampling presets. `sampling` times existing runs.
Samplers with long chains (200 network calls and more) are timed on a batch of --long-chain-batch.
`quality` trains each image model for --minutes with --precision auto and again with fp32, and
evaluates both with `genlab eval` (FID, precision, recall): more steps in the same minutes should show
as equal or better quality.

Run it on an otherwise idle machine: on a 2-core CPU another busy process slows PyTorch's threads
far more than 2x, and even idle, 20-second windows vary by 10-20% from one to the next; --repeats
times several windows and prints the median and the range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

import genlab
from genlab.registry import get_model_class, model_names
from genlab.runs import Run

MODES = {"fp32": ("fp32", False), "bf16": ("bf16", False), "compiled-fp32": ("fp32", True),
         "compiled-bf16": ("bf16", True)}


def _modes(text: str) -> list[str]:
    modes = text.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    return modes


def train_rate(name: str, args, mode: str, out: str, steps: int | None = None) -> tuple[float, dict]:
    """Steady-state steps/s of `seconds` of training (or of `steps`) in `mode`, and the run's info."""
    precision, compile_ = MODES[mode]
    torch._dynamo.reset()  # compiled code is cached per function across instances: start each mode clean
    budget = {"steps": steps} if steps else {"minutes": args.seconds / 60}
    run = genlab.train(name, args.data, out=out, **budget, data_dir=args.data_dir, progress=False,
                       sample_every=0, checkpoint_every=0, log_every=10, overwrite=True, precision=precision,
                       compile=compile_)
    rows = [r for r in run.metrics() if "time" in r and "eval" not in r]
    first, last = rows[0], rows[-1]  # the first row is step 1: compilation, allocation, warm caches
    rate = (last["step"] - first["step"]) / max(last["time"] - first["time"], 1e-9)
    return rate, run.info()


def sampling_rates(run: Run, modes: list[str], n: int, long_chain_batch: int, max_calls: int | None = None,
                   repeats: int = 1) -> list[tuple[str, str, list[float], float]]:
    """(mode, preset, samples/s of each timed batch, warm-up seconds) for each mode and sampling preset of
    the run's model.

    Each preset is warmed up (allocations, and the compilation in compiled modes) with one batch of the
    same shape drawn with the preset at 2 steps (or the model's cheap preview options), then `repeats`
    batches are timed one by one (on a shared host one batch can take twice as long as the next).
    """
    from genlab.compilation import compile_model
    from genlab.eval.speed import timed_sampling
    from genlab.sampling import sample_in_batches

    rows = []
    for mode in modes:
        precision, compile_ = MODES[mode]
        torch._dynamo.reset()
        run = Run(run.path)  # a fresh model per mode: compiled models stay compiled
        model = run.load_model()
        if compile_:
            compile_model(model, "sample")
        for preset, options in model.sampling_presets().items():
            options = model.sample_options(**options)
            if max_calls is not None and model.network_calls(**options) > max_calls:
                continue
            batch = long_chain_batch if model.network_calls(**options) >= 200 else n
            conditions = model.evaluation_conditions(batch)
            start = time.perf_counter()
            # the preset itself with few steps warms up the very graphs it will call (a compiled model
            # compiles once per input signature); presets without a step count use the preview options
            warm_options = {**options, "steps": 2} if "steps" in options else model.preview_options()
            sample_in_batches(model, batch, conditions, batch_size=batch, options=warm_options, precision=precision)
            warm = time.perf_counter() - start
            rates = [timed_sampling(model, batch, batch_size=batch, conditions=conditions, options=options,
                                    precision=precision, warmup=0)[1]["samples_per_sec"] for _ in range(repeats)]
            rows.append((mode, f"{preset} (batch {batch})", rates, warm))
    return rows


def throughput(args) -> None:
    modes = _modes(args.modes)
    print(f"genlab {genlab.__file__}\ndevice: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads: "
          f"{torch.get_num_threads()}, data: {args.data}, {args.repeats} x {args.seconds:g} s per model and mode")
    for name in args.models.split(","):
        if name not in model_names():
            raise SystemExit(f"unknown model '{name}'; registered: {', '.join(model_names())}")
        if get_model_class(name).references:
            print(f"\n{name}: skipped (it trains on another run: {', '.join(get_model_class(name).references)})")
            continue
        print(f"\n{name}")
        print(f"  {'mode':<14} {'steps/s':>8} {'range':>13} {'samples/s':>10} {'first step s':>12}")
        with tempfile.TemporaryDirectory() as tmp:
            eager_rate = None
            for mode in modes:
                rates, info = [], {}
                # compiled modes train a step count (the minutes budget would include the compile time)
                steps = int(eager_rate * args.seconds) + 1 if MODES[mode][1] and eager_rate else None
                for _ in range(args.repeats):
                    rate, info = train_rate(name, args, mode, f"{tmp}/run", steps)
                    rates.append(rate)
                if not MODES[mode][1]:
                    eager_rate = max(eager_rate or 0.0, statistics.median(rates))
                rate, batch = statistics.median(rates), info["effective_batch_size"]
                first = info.get("compile_seconds") or 0.0
                print(f"  {mode:<14} {rate:>8.2f} {min(rates):>6.2f}-{max(rates):<6.2f} {rate * batch:>10.0f} "
                      f"{first:>12.1f}", flush=True)
            if args.sample and get_model_class(name).can_sample:
                print(f"  sampling ({info['parameters']:,} parameters; warm-up = the compile cost when compiled)")
                for row in sampling_rates(Run(f"{tmp}/run"), modes, args.n, args.long_chain_batch):
                    print_sampling_row(*row)


def sampling(args) -> None:
    modes = _modes(args.modes)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads: {torch.get_num_threads()}, batch: {args.n}")
    for path in args.runs:
        run = Run(path)
        info = run.info()
        print(f"\n{path} ({run.model_name}, {info['parameters']:,} parameters, step {info['step']})")
        for row in sampling_rates(run, modes, args.n, args.long_chain_batch, args.max_calls, args.repeats):
            print_sampling_row(*row)


def print_sampling_row(mode: str, preset: str, rates: list[float], warm: float) -> None:
    spread = f"  ({min(rates):.1f}-{max(rates):.1f}, {len(rates)} batches)" if len(rates) > 1 else ""
    print(f"  {mode:<14} {preset:<36} {statistics.median(rates):>9.1f} samples/s  warm-up {warm:6.1f} s{spread}",
          flush=True)


def quality(args) -> None:
    """Train with auto and with fp32; evaluate auto-trained runs sampled both ways, fp32 runs in fp32."""
    results = []
    for name in args.models.split(","):
        cls = get_model_class(name)
        if "image" not in cls.data_kinds or cls.references or not cls.can_sample:
            continue
        runs = {}
        for precision in ("auto", "fp32"):
            start = time.perf_counter()
            runs[precision] = genlab.train(name, args.data, out=f"{args.out}/{name}-{precision}", minutes=args.minutes,
                                           data_dir=args.data_dir, precision=precision, overwrite=True, progress=False,
                                           checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints)
            runs[precision].wall_seconds = time.perf_counter() - start
        for trained, sampled in (("auto", "auto"), ("auto", "fp32"), ("fp32", "fp32")):
            run = runs[trained]
            info = run.info()
            options = {"sampler": "ddim", "steps": 50} if "sampler" in run.load_model().sample_options() else {}
            entry = genlab.evaluate(run, n=args.n, likelihood=False, memorization=False, precision=sampled, **options)
            s = entry["scores"]
            results.append({"model": name, "trained": trained, "train_precision": info["precision"], "steps": info["step"],
                            "sampled": entry["speed"]["precision"], "wall_seconds": run.wall_seconds, "scores": s})
            print(f"{name:<8} trained {trained:<4} ({info['precision']}) {info['step']:>6} steps, sampled "
                  f"{entry['speed']['precision']:<4}  FID {s['fid']:6.2f}  precision {s['precision']:.3f}  "
                  f"recall {s['recall']:.3f}  {s['samples_per_sec']:7.1f} samples/s", flush=True)
    with open(f"{args.out}/quality.json", "w") as f:
        json.dump(results, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput", help="training steps/s and sampling samples/s per mode")
    t.add_argument("--data", default="digits")
    t.add_argument("--data-dir", default=None)
    t.add_argument("--models", default=",".join(model_names()))
    t.add_argument("--modes", default=",".join(MODES))
    t.add_argument("--seconds", type=float, default=30.0, help="timed training per model, mode and repeat")
    t.add_argument("--repeats", type=int, default=1)
    t.add_argument("--no-sample", dest="sample", action="store_false", help="skip the sampling timings")
    t.add_argument("-n", type=int, default=500, help="samples per timed batch")
    t.add_argument("--long-chain-batch", type=int, default=100)
    t.set_defaults(func=throughput)
    s = sub.add_parser("sampling", help="samples/s of trained runs per mode and preset")
    s.add_argument("runs", nargs="+")
    s.add_argument("--modes", default=",".join(MODES))
    s.add_argument("-n", type=int, default=500)
    s.add_argument("--long-chain-batch", type=int, default=100)
    s.add_argument("--max-calls", type=int, default=None, help="skip presets with more network calls per sample")
    s.add_argument("--repeats", type=int, default=3, help="timed batches per preset; the median is printed")
    s.set_defaults(func=sampling)
    q = sub.add_parser("quality", help="--minutes of training with auto and with fp32 precision, then genlab eval")
    q.add_argument("--data", default="mnist")
    q.add_argument("--data-dir", default=None)
    q.add_argument("--models", default=",".join(model_names()))
    q.add_argument("--minutes", type=float, default=10.0)
    q.add_argument("-n", type=int, default=2000, help="samples per evaluation")
    q.add_argument("--out", default="bench-speed")
    q.add_argument("--checkpoint-every", type=int, default=500)
    q.add_argument("--keep-checkpoints", type=int, default=2, help="more keeps earlier checkpoints to evaluate")
    q.set_defaults(func=quality)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
