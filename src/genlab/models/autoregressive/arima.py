"""ARIMA: the classical baseline of series forecasting, fitted by statsmodels, with no network at all.

Box & Jenkins 1970; seasonal ARIMA(p, d, q)(P, D, Q)_s through `statsmodels.tsa.arima.model.ARIMA` (a state
space model whose exact Gaussian likelihood is maximised with the Kalman filter, Durbin & Koopman 2012). The
order is chosen the way Hyndman & Khandakar 2008 ("Automatic time series forecasting: the forecast package
for R") choose it: the seasonal differences D by the strength of the STL seasonal component (above 0.64,
Wang, Smith & Hyndman 2006), the differences d by KPSS tests (Kwiatkowski et al. 1992) at the 5% level, then
(p, q, P, Q) by the lowest AIC over a small grid fitted on the training part only (AIC compares fits of the
same differenced data; it cannot choose d). A constant (d + D = 0) or a drift (d + D = 1) is included.

The model is fitted once by `fit(data)` and saved like any run: the chosen order and the fitted parameters
are buffers of fixed size, so the checkpoint is plain safetensors, and a forecast rebuilds the statsmodels
model from them and filters the history it is given (no refit). Sample paths are statsmodels' simulations
from the filtered state at the end of that history, drawn from a NumPy generator seeded by the torch one.
"""

from __future__ import annotations

import itertools
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...batch import CONTEXT
from ...data.base import DataSpec
from ...errors import ArgumentError, DataError
from ..base import GenerativeModel

TRENDS = ("n", "c", "t")  # none, constant, linear trend (a drift once differenced)
KPSS_LEVEL = 0.05
SEASONAL_STRENGTH = 0.64


@dataclass
class ARIMAConfig:
    max_p: int = 3
    max_q: int = 2
    max_P: int = 1  # seasonal orders, tried only for a seasonal series
    max_Q: int = 1
    d: int | None = None  # None: KPSS tests on the training part
    D: int | None = None  # None: 1 if the STL seasonal strength exceeds 0.64
    max_d: int = 2
    season: int | None = None  # None: the data's own (co2 monthly: 12, sunspots: 11); 0 or 1: not seasonal
    context: int = 240  # last steps of the training series kept, to continue from when sampling without a context


class ARIMA(GenerativeModel):
    family = "autoregressive"
    description = "ARIMA baseline (statsmodels): seasonal order by KPSS, STL strength and AIC; fitted, not trained"
    config_class = ARIMAConfig
    data_kinds = ("series",)
    sampling_inputs = (CONTEXT,)

    def __init__(self, config: ARIMAConfig, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__(config, spec, conditions)
        c = self.config
        if spec.shape[0] != 1:
            raise ArgumentError(f"arima models one channel, and this data has {spec.shape[0]}: "
                                "pick one with csv:PATH:COLUMN")
        if min(c.max_p, c.max_q, c.max_P, c.max_Q, c.max_d, c.context) < 0:
            raise ArgumentError("arima's max_p, max_q, max_P, max_Q, max_d and context cannot be negative")
        self.window = spec.shape[1]
        season = c.season if c.season is not None else int(spec.extras.get("season") or 0)
        self.season = season if season > 1 else 0
        # fixed sizes whatever the order chosen, so that a checkpoint loads into a freshly built model
        self.register_buffer("order", torch.zeros(8, dtype=torch.long))  # p, d, q, P, D, Q, s, trend; all 0 = unfitted
        self.register_buffer("params", torch.full((c.max_p + c.max_q + c.max_P + c.max_Q + 2,), float("nan"),
                                                  dtype=torch.float64))
        self.register_buffer("context", torch.full((c.context,), float("nan"), dtype=torch.float64))

    # ------------------------------------------------------------------ fitting
    def fit(self, data) -> dict[str, Any]:
        """Choose the order on the training part of a series source and fit it (statsmodels MLE)."""
        head = getattr(data, "train", None)
        if not isinstance(head, torch.Tensor) or head.dim() != 2:
            raise DataError(f"arima fits a series (csv:PATH, sunspots, co2), not {type(data).__name__}")
        y = head[0].double().cpu().numpy()
        s = self.season if len(y) >= 3 * self.season else 0  # too short for a seasonal model: plain ARIMA
        D = self.config.D if self.config.D is not None else (seasonal_differences(y, s) if s else 0)
        d = self.config.d if self.config.d is not None else differences(seasonal_difference(y, s, D), self.config.max_d)
        trend = 1 if d + D == 0 else 2 if d + D == 1 else 0
        seasonal_grid = itertools.product(range(self.config.max_P + 1), range(self.config.max_Q + 1)) if s else [(0, 0)]
        best, fits = None, 0
        for (p, q), (P, Q) in itertools.product(itertools.product(range(self.config.max_p + 1),
                                                                  range(self.config.max_q + 1)), list(seasonal_grid)):
            try:
                with _quiet():
                    result = _statsmodels(y, (p, d, q, P, D, Q, s, trend)).fit()
            except (ValueError, np.linalg.LinAlgError):  # a singular or unstable start: that order is not a candidate
                continue
            fits += 1
            if np.isfinite(result.aic) and (best is None or result.aic < best[0]):
                best = (result.aic, (p, d, q, P, D, Q, s, trend), result.params)
        if best is None:
            raise DataError(f"no ARIMA order could be fitted to {len(y)} steps; give a longer series or "
                            "fix the differences (--set d=1)")
        aic, order, params = best
        self.order.copy_(torch.tensor(order))
        self.params.fill_(float("nan"))
        self.params[: len(params)] = torch.from_numpy(np.asarray(params, dtype=np.float64))
        kept = min(len(y), len(self.context))
        self.context.fill_(float("nan"))
        if kept:
            self.context[len(self.context) - kept :] = torch.from_numpy(y[len(y) - kept :].copy())
        return {"aic": float(aic), "fits": fits, **dict(zip(("p", "d", "q", "P", "D", "Q", "s"), order[:7]))}

    def training_loss(self, batch, phase, step, generator):
        raise TypeError("arima has no trainable parameters: it is fitted by fit(data), never given a training step")

    @property
    def fitted(self) -> bool:
        return bool(torch.isfinite(self.params).any())

    def describe_order(self) -> str:
        p, d, q, P, D, Q, s, trend = self.order.tolist()
        seasonal = f"({P},{D},{Q})_{s}" if s else ""
        return f"ARIMA({p},{d},{q}){seasonal} trend {TRENDS[trend]}"

    # ------------------------------------------------------------------ forecasting and sampling
    @torch.inference_mode()
    def forecast_paths(self, history: torch.Tensor, horizon: int, n: int, generator: torch.Generator | None = None,
                       **options: Any) -> torch.Tensor:
        """n simulated paths (n, 1, horizon) continuing history (1, N) or (n, 1, N), in the data's units."""
        if not self.fitted:
            raise ArgumentError("this arima model is not fitted yet: train its run (`genlab train arima --data ...`)")
        if history.dim() == 2:
            return self._simulate(history[0].double().cpu().numpy(), horizon, n, generator)
        return torch.cat([self._simulate(h[0].double().cpu().numpy(), horizon, 1, generator) for h in history])

    def _simulate(self, y: np.ndarray, horizon: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
        device = generator.device if generator is not None else torch.device("cpu")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
        order = tuple(self.order.tolist())
        params = self.params[torch.isfinite(self.params)].cpu().numpy()
        with _quiet():
            result = _statsmodels(y, order).filter(params)
            paths = result.simulate(horizon, anchor="end", repetitions=n, rng=np.random.default_rng(seed))
        paths = np.asarray(paths).reshape(horizon, 1, n)  # (H, 1, n)
        return torch.from_numpy(paths).permute(2, 1, 0).to(self.device, torch.float32)

    @torch.inference_mode()
    def sample(self, n, conditions=None, generator=None, **options: Any) -> torch.Tensor:
        """n windows (n, 1, window) continuing a `context` condition (n, 1, T0), else the end of the training series."""
        if options:
            raise ArgumentError(f"arima sampling takes no options, got {', '.join(options)}")
        conditions = self.check_conditions(n, conditions)
        history = conditions.get(CONTEXT)
        return self.forecast_paths(self.context[None] if history is None else history.float(), self.window, n,
                                   generator)


def _statsmodels(y: np.ndarray, order: tuple[int, ...]):
    from statsmodels.tsa.arima.model import ARIMA as StatsmodelsARIMA

    p, d, q, P, D, Q, s, trend = order
    return StatsmodelsARIMA(y, order=(p, d, q), seasonal_order=(P, D, Q, s) if s else (0, 0, 0, 0), trend=TRENDS[trend])


@contextmanager
def _quiet():
    """statsmodels' warnings silenced: non-invertible starts and non-convergence (the AIC judges each fit), a
    singular predicted-state covariance (expected of a differenced model), KPSS p-values beyond its table."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------------------------- order tests
def seasonal_difference(y: np.ndarray, s: int, D: int) -> np.ndarray:
    for _ in range(D):
        y = y[s:] - y[:-s]
    return y


def seasonal_differences(y: np.ndarray, s: int) -> int:
    """1 if the STL seasonal component explains enough of the detrended variance (strength > 0.64), else 0."""
    from statsmodels.tsa.seasonal import STL

    if s < 2 or len(y) < 2 * s + 1:
        return 0
    fit = STL(y, period=s).fit()
    strength = max(0.0, 1 - np.var(fit.resid) / max(np.var(fit.seasonal + fit.resid), 1e-12))
    return int(strength > SEASONAL_STRENGTH)


def differences(y: np.ndarray, max_d: int) -> int:
    """The fewest differences after which a KPSS test no longer rejects level stationarity at 5%."""
    from statsmodels.tsa.stattools import kpss

    for d in range(max_d + 1):
        z = np.diff(y, n=d) if d else y
        if d == max_d or len(z) < 10 or np.ptp(z) == 0:
            return d
        with _quiet():
            p_value = kpss(z, regression="c", nlags="auto")[1]
        if p_value >= KPSS_LEVEL:
            return d
    return max_d
