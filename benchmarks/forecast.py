"""Forecast benchmark: WaveNet and ARIMA against the naive and seasonal-naive forecasts, on a held-out tail.

    OMP_NUM_THREADS=1 python benchmarks/forecast.py                 # both series
    OMP_NUM_THREADS=1 python benchmarks/forecast.py --series co2 --out bench-forecast

`sunspots`: yearly 1700-2008, season 11 (the Schwabe cycle), horizon 11. `co2`: weekly Mauna Loa with gaps,
resampled to monthly means (gaps interpolated), season 12, horizon 24. Each series holds out its last 64
steps (one window); every model is trained or fitted on the part before and forecasts from its end. Scores
are MASE (scaled by the in-sample seasonal-naive error) and sMAPE of the median of the sample paths, in
the series' own units, with the coverage of the 80% and 95% intervals, from one origin (the end of the
training part, the issue's measure) and averaged over every origin whose horizon fits in the tail (a rolling
origin without refit: one origin is one draw of luck). Plots (first origin) go to --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import genlab
from genlab.apps.forecast import forecast, plot_forecast

SERIES = {
    "sunspots": {"data": "sunspots", "options": {}, "horizon": 11,
                 # levels: stationary, no trend to difference away (its largest cycles are in the tail all the same)
                 "wavenet": {"residual_channels": 32, "dilation_channels": 32, "skip_channels": 64}},
    "co2": {"data": "co2", "options": {"resample": "monthly"}, "horizon": 24,
            # differences: the trend takes the tail above every training value, out of reach of a model of levels
            # (and so, by default, mu-law bins and narrow HL-Gauss targets: increments sit near zero)
            "wavenet": {"residual_channels": 32, "dilation_channels": 32, "skip_channels": 64, "difference": 1}},
}
# co2: 36 fits of a seasonal model. Sunspots: the ~11-year cycle is quasi-periodic (9 to 14 years), not a season
# to difference away, and autoregression was invented to model it (Yule 1927): up to AR(9), as in Box & Jenkins
ARIMA_GRIDS = {"sunspots": {"max_p": 9, "max_q": 2, "season": 0},
               "co2": {"max_p": 2, "max_q": 2, "max_P": 1, "max_Q": 1}}


def run_series(name: str, spec: dict, out: Path, steps: int, paths: int, seed: int) -> list[dict]:
    rows = []
    data_options = {"window": 64, **spec["options"]}
    for model, config, train in (("arima", ARIMA_GRIDS[name], {"steps": 1}),
                                 ("wavenet", spec["wavenet"], {"steps": steps, "batch_size": 32})):
        start = time.perf_counter()
        run = genlab.train(model, spec["data"], out=out / f"{model}-{name}", overwrite=True, progress=False,
                           model_config=config, data_options=data_options, sample_every=0, checkpoint_every=0,
                           device="cpu", seed=seed, **train)
        seconds = time.perf_counter() - start
        chosen = run.load_model().describe_order() if model == "arima" else f"{steps} steps"
        tail = 64  # the held-out tail: one window
        for origins in (1, tail - spec["horizon"] + 1):
            result = forecast(run, spec["horizon"], paths, seed, origins=origins)
            if origins == 1:
                plot_forecast(result, out / f"{model}-{name}.png")
            for method, score in result.scores.items():
                if method in ("naive", "seasonal naive") and model != "arima":
                    continue  # the baselines are the same for both models: once per series
                row = {"series": name, "origins": origins, "method": method, **score,
                       "detail": chosen if method == model else ""}
                if method == model:
                    row.update({f"cover{k}": v for k, v in result.coverage.items()}, seconds=seconds)
                rows.append(row)
        print(f"{name} {model}: {seconds:.0f} s to train or fit, {chosen}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="*", default=list(SERIES), choices=list(SERIES))
    parser.add_argument("--steps", type=int, default=600, help="WaveNet training steps")
    parser.add_argument("--paths", type=int, default=1000, help="sample paths: the median of fewer wobbles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-forecast", help="runs and plots")
    args = parser.parse_args()
    out = Path(args.out)
    rows = [row for name in args.series for row in run_series(name, SERIES[name], out, args.steps, args.paths, args.seed)]
    print(f"\n{'series':<9} {'origins':>7} {'method':<15} {'MASE':>6} {'sMAPE %':>8} {'80% cov':>8} {'95% cov':>8} "
          f"{'s':>5}  detail")
    for r in sorted(rows, key=lambda r: (r["series"], r["origins"], r["MASE"])):
        cover = (f"{100 * r['cover80']:>7.0f}% {100 * r['cover95']:>7.0f}%" if "cover80" in r else f"{'':>8} {'':>8}")
        seconds = f"{r['seconds']:>5.0f}" if "seconds" in r else f"{'':>5}"
        print(f"{r['series']:<9} {r['origins']:>7} {r['method']:<15} {r['MASE']:>6.3f} {r['sMAPE']:>8.2f} {cover} "
              f"{seconds}  {r['detail']}")
    print(f"\norigins 1: from the end of the training part only; more: the mean over every origin whose horizon "
          f"fits in the held-out tail. Plots (origin 1): {out.resolve()}/*.png")


if __name__ == "__main__":
    main()
