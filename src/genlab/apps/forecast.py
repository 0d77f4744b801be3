"""Forecasting from a series run: sample paths past the training part, scored against the held-out tail.

A run's series is split into a training part (the head) and a held-out tail (genlab.data.series). A
forecast continues the whole head by `horizon` steps with any model that draws sample paths
(`forecast_paths(history, horizon, n, generator)`: wavenet, arima), maps them back to the series' own
units with the run's saved statistics, and summarises them by their median and central 80% and 95%
intervals. The median is scored against the first `horizon` steps of the tail by MASE and sMAPE
(genlab.eval.forecasting), beside the naive and seasonal-naive forecasts from the same history.

One origin is one draw of luck (a seasonal-naive copy of the last cycle can happen to be in phase). With
`origins=k` the forecast is repeated from the end of the head and from each of the next k - 1 steps of the
tail (the model conditions on the observed tail up to its origin, no refit: a rolling origin, Tashman
2000), and the scores and coverages are averaged over the k origins; paths and plot are the first origin's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ArgumentError

LEVELS = (80, 95)


@dataclass
class Forecast:
    """Sample paths and their summary, all in the series' own units; tensors are (C, T) per channel."""

    run: str
    model: str
    history: torch.Tensor  # (C, N) the training part the forecast continues
    actual: torch.Tensor  # (C, H) the held-out steps it is scored against
    paths: torch.Tensor  # (n, C, H)
    median: torch.Tensor  # (C, H)
    intervals: dict[int, tuple[torch.Tensor, torch.Tensor]]  # level -> (lower, upper), each (C, H)
    season: int
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> {"MASE", "sMAPE"}
    coverage: dict[int, float] = field(default_factory=dict)  # level -> share of actual values inside
    origins: int = 1  # forecast origins the scores and coverages average over

    @property
    def horizon(self) -> int:
        return self.actual.shape[-1]

    def table(self) -> str:
        """The scores as a plain-text table, best MASE first."""
        rows = sorted(self.scores.items(), key=lambda kv: kv[1]["MASE"])
        lines = [f"{'method':<16} {'MASE':>7} {'sMAPE %':>8}"]
        lines += [f"{name:<16} {s['MASE']:>7.3f} {s['sMAPE']:>8.2f}" for name, s in rows]
        cover = ", ".join(f"{level}% interval holds {100 * share:.0f}%" for level, share in self.coverage.items())
        season = f"season {self.season}" if self.season > 1 else "no season"
        origins = f", mean over {self.origins} origins" if self.origins > 1 else ""
        lines.append(f"({self.model}, {len(self.paths)} paths, horizon {self.horizon}, {season}{origins}; "
                     f"{cover} of the tail)")
        return "\n".join(lines)


def forecast(run, horizon: int = 24, n_paths: int = 100, seed: int = 0, *, season: int | None = None,
             origins: int = 1, checkpoint: str = "latest", device: str | None = None) -> Forecast:
    """Forecast `horizon` steps past the training part of a series run and score them.

    Args:
        run: A run directory (or `genlab.runs.Run`) of a model that forecasts (wavenet, arima) on series data.
        horizon: Steps ahead; at most the length of the held-out tail.
        n_paths: Sample paths drawn; the median and intervals are taken across them.
        seed: Seeds the one generator every path is drawn from.
        season: Steps per season for the seasonal-naive forecast and MASE's scale; None: the data's own.
        origins: Forecast from this many consecutive origins (the end of the training part, then one step
            further into the tail each) and average the scores over them.

    Returns:
        A `Forecast`: paths, median, 80% and 95% intervals, MASE and sMAPE of the model's median and of the
        naive and seasonal-naive forecasts, and the intervals' coverage of the tail.

    Raises:
        ArgumentError: The run's model does not forecast, or the horizon does not fit in the held-out tail.
    """
    from ..api import load_run_data
    from ..data.series import STATS_ASSET, series_stats_from_assets
    from ..eval.forecasting import coverage, forecast_scores
    from ..runs import Run

    run = run if isinstance(run, Run) else Run(run)
    model = run.load_model(checkpoint, device=device)
    if not callable(getattr(model, "forecast_paths", None)):
        raise ArgumentError(f"{run.path} is a {run.model_name} run, which draws no forecasts; train a model that "
                            "does (wavenet, arima) on a series, e.g. `genlab train arima --data sunspots`")
    if horizon < 1 or n_paths < 1 or origins < 1:
        raise ArgumentError(f"--horizon, --paths and --origins must be at least 1, got {horizon}, {n_paths}, {origins}")
    data = load_run_data(run)
    head, tail = getattr(data, "train", None), getattr(data, "val", None)
    if not isinstance(head, torch.Tensor) or not isinstance(tail, torch.Tensor):
        raise ArgumentError(f"{run.path} was not trained on a series (its data: {data.name}); forecasts need one")
    if horizon + origins - 1 > tail.shape[-1]:
        most = tail.shape[-1] - origins + 1
        raise ArgumentError(f"the held-out tail of {data.name} has {tail.shape[-1]} steps, fewer than --horizon "
                            f"{horizon} from {origins} origin(s); choose --horizon {most} or less, fewer --origins, or "
                            "a larger window (--set train.data_options.window=..., which holds out at least one window)")
    generator = torch.Generator(model.device).manual_seed(seed)
    assets = run.assets()
    if STATS_ASSET in assets:  # back to the series' own units
        mean, std = series_stats_from_assets(assets)
        to_units = lambda x: x * std[:, None] + mean[:, None]  # noqa: E731
    else:  # audio is modelled in its own units
        to_units = lambda x: x  # noqa: E731
    season = int(season if season is not None else data.spec.extras.get("season") or 0)
    results = []
    for k in range(origins):
        observed = torch.cat([head, tail[..., :k]], -1)
        paths = to_units(model.forecast_paths(observed, horizon, n_paths, generator).float().cpu())  # (n, C, H)
        history, actual = to_units(observed), to_units(tail[..., k : k + horizon])
        median = paths.median(0).values
        intervals = {level: (paths.quantile((1 - level / 100) / 2, 0), paths.quantile(1 - (1 - level / 100) / 2, 0))
                     for level in LEVELS}
        results.append(Forecast(str(run.path), run.model_name, history, actual, paths, median, intervals, season,
                                scores=forecast_scores(actual, {run.model_name: median}, history, season),
                                coverage={level: coverage(actual, lo, hi) for level, (lo, hi) in intervals.items()}))
    first = results[0]
    first.origins = origins
    first.scores = {method: {key: sum(r.scores[method][key] for r in results) / origins for key in values}
                    for method, values in first.scores.items()}
    first.coverage = {level: sum(r.coverage[level] for r in results) / origins for level in LEVELS}
    return first


def plot_forecast(result: Forecast, path: str | Path, history_steps: int | None = None, channel: int = 0) -> Path:
    """History, held-out tail, median and 80%/95% intervals of one channel, as an image file.

    history_steps: the last steps of history shown (default: four horizons, at least 48).
    """
    from matplotlib.figure import Figure

    history = result.history[channel]
    shown = min(len(history), history_steps or max(4 * result.horizon, 48))
    n = len(history)
    past = torch.arange(n - shown, n)
    ahead = torch.arange(n, n + result.horizon)
    fig = Figure(figsize=(8, 3.6), dpi=110)  # a bare Figure: no pyplot state, no backend switch
    ax = fig.subplots()
    ax.plot(past, history[-shown:], color="#333333", linewidth=1, label="history (training part)")
    ax.plot(ahead, result.actual[channel], color="#d62728", linewidth=1.2, label="held-out tail")
    for level, alpha in zip(sorted(result.intervals, reverse=True), (0.18, 0.32)):
        lo, hi = result.intervals[level]
        ax.fill_between(ahead, lo[channel], hi[channel], color="#1f77b4", alpha=alpha, linewidth=0,
                        label=f"{level}% interval")
    ax.plot(ahead, result.median[channel], color="#1f77b4", linewidth=1.4, label=f"median of {len(result.paths)} paths")
    score = result.scores.get(result.model, {})
    ax.set_title(f"{result.model}: MASE {score.get('MASE', float('nan')):.3f}, sMAPE {score.get('sMAPE', float('nan')):.1f}%",
                 fontsize=9)
    ax.set_xlabel("step")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
