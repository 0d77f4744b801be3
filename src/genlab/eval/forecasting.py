"""Point-forecast scores and the two forecasts every method must beat.

MASE (Hyndman & Koehler 2006, "Another look at measures of forecast accuracy"): the forecast's mean absolute
error over the horizon divided by the in-sample mean absolute error of the seasonal-naive forecast on the
training series (season m; m = 1 is the naive one-step forecast). Below 1 the forecast beats, on the held-out
horizon, what the naive method achieved one step ahead in-sample; it is scale-free and defined when the
series touches zero. sMAPE as in the M4 competition (Makridakis et al. 2020): 200/h * sum |y - f| / (|y| + |f|),
in percent, with a term 0 where both are 0. Both are computed in the series' own units, not standardised
ones (sMAPE is not invariant to a shift).

Series are (C, T) tensors; scores average over channels.
"""

from __future__ import annotations

import torch

from ..errors import ArgumentError


def naive_forecast(history: torch.Tensor, horizon: int) -> torch.Tensor:
    """The last observed value, repeated: (C, N) -> (C, horizon)."""
    return history[..., -1:].expand(*history.shape[:-1], horizon).clone()


def seasonal_naive_forecast(history: torch.Tensor, horizon: int, season: int) -> torch.Tensor:
    """The value one season before each step: f_{N+h} = y_{N+h-m*ceil(h/m)}; season <= 1 is the naive forecast."""
    if season <= 1:
        return naive_forecast(history, horizon)
    if history.shape[-1] < season:
        raise ArgumentError(f"a seasonal-naive forecast with season {season} needs that many steps of history, "
                            f"got {history.shape[-1]}")
    return history[..., -season:][..., torch.arange(horizon) % season]


def mase(actual: torch.Tensor, forecast: torch.Tensor, history: torch.Tensor, season: int = 1) -> float:
    """Mean absolute scaled error of forecast against actual (C, H), scaled on history (C, N)."""
    m = max(int(season), 1)
    if history.shape[-1] <= m:
        raise ArgumentError(f"MASE with season {m} needs more than {m} steps of history, got {history.shape[-1]}")
    _check(actual, forecast)
    history = history.double()
    scale = (history[..., m:] - history[..., :-m]).abs().mean(-1)  # (C,)
    if (scale == 0).any():
        raise ArgumentError("MASE is undefined for a history whose seasonal-naive errors are all zero (a constant or exactly periodic series)")
    errors = (actual.double() - forecast.double()).abs().mean(-1)  # (C,)
    return float((errors / scale).mean())


def smape(actual: torch.Tensor, forecast: torch.Tensor) -> float:
    """Symmetric mean absolute percentage error (M4), percent, of forecast against actual (C, H)."""
    _check(actual, forecast)
    y, f = actual.double(), forecast.double()
    denominator = y.abs() + f.abs()
    terms = torch.where(denominator > 0, 2 * (y - f).abs() / denominator.clamp(min=1e-300), torch.zeros_like(y))
    return float(100 * terms.mean())


def coverage(actual: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> float:
    """Share of actual values inside [lower, upper]: near 0.8 for a calibrated 80% interval."""
    _check(actual, lower)
    return float(((actual >= lower) & (actual <= upper)).double().mean())


def forecast_scores(actual: torch.Tensor, forecasts: dict[str, torch.Tensor], history: torch.Tensor,
                    season: int = 1) -> dict[str, dict[str, float]]:
    """{method: {"MASE": ..., "sMAPE": ...}} for each point forecast, with the naive and seasonal-naive
    forecasts added as "naive" and "seasonal naive" (MASE scaled by the seasonal-naive in-sample error)."""
    horizon = actual.shape[-1]
    baselines = {"naive": naive_forecast(history, horizon)}
    if season > 1:
        baselines["seasonal naive"] = seasonal_naive_forecast(history, horizon, season)
    return {name: {"MASE": mase(actual, f, history, season), "sMAPE": smape(actual, f)}
            for name, f in {**forecasts, **baselines}.items()}


def _check(actual: torch.Tensor, forecast: torch.Tensor) -> None:
    if actual.shape != forecast.shape:
        raise ArgumentError(f"forecast of shape {tuple(forecast.shape)} scored against actual values of shape "
                            f"{tuple(actual.shape)}; give one value per channel and step")
