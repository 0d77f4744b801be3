"""genlab.models.autoregressive.arima: order selection, a fitted run's safetensors checkpoint, sampling, forecasts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genlab.data.base import DataSpec
from genlab.errors import ArgumentError
from genlab.models.autoregressive.arima import ARIMA, ARIMAConfig, differences, seasonal_differences
from genlab.runs import Run


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Head:
    """The part of a series source that fit() reads: its standardised training head (C, N)."""

    def __init__(self, values):
        self.train = torch.as_tensor(np.asarray(values, dtype=np.float32))[None]


def model(window: int = 16, **config) -> ARIMA:
    return ARIMA(ARIMAConfig(**{"max_p": 2, "max_q": 1, "max_P": 0, "max_Q": 0, **config}),
                 DataSpec("series", (1, window)))


def ar1(n: int, phi: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + rng.standard_normal()
    return x


def test_differences_follow_the_kpss_tests():
    assert differences(ar1(300, 0.5), 2) == 0
    assert differences(np.cumsum(np.random.default_rng(1).standard_normal(300)), 2) == 1
    t = np.arange(240)
    seasonal = np.sin(2 * np.pi * t / 12) * 5 + 0.1 * np.random.default_rng(2).standard_normal(240)
    assert seasonal_differences(seasonal, 12) == 1
    assert seasonal_differences(np.random.default_rng(3).standard_normal(240), 12) == 0


def test_fit_chooses_an_ar_order_by_aic_and_recovers_the_coefficient():
    m = model()
    logs = m.fit(Head(ar1(400, 0.7)))
    assert logs["d"] == 0 and logs["p"] >= 1 and logs["fits"] == 6 and math.isfinite(logs["aic"])
    assert m.fitted and m.describe_order().startswith("ARIMA(")
    assert abs(float(m.params[1]) - 0.7) < 0.1  # const, ar.L1, ...: the AR coefficient of the chosen model


def test_an_unfitted_model_and_multichannel_data_are_refused_with_the_fix():
    with pytest.raises(ArgumentError, match="not fitted yet: train its run"):
        model().sample(2, generator=gen(0))
    with pytest.raises(ArgumentError, match="pick one with csv:PATH:COLUMN"):
        ARIMA(ARIMAConfig(), DataSpec("series", (2, 16)))
    with pytest.raises(ArgumentError, match="takes no options"):
        m = model()
        m.fit(Head(ar1(200, 0.5)))
        m.sample(2, generator=gen(0), steps=3)


def test_paths_are_drawn_from_the_generator_and_continue_the_history():
    m = model()
    m.fit(Head(ar1(300, 0.9)))
    history = torch.full((1, 50), 3.0)  # far from the mean: an AR(1) path starts near 0.9 * 3
    a = m.forecast_paths(history, 8, 200, gen(0))
    assert a.shape == (200, 1, 8) and a.dtype == torch.float32
    assert torch.equal(a, m.forecast_paths(history, 8, 200, gen(0)))
    assert not torch.equal(a, m.forecast_paths(history, 8, 200, gen(1)))
    assert 1.5 < float(a[:, 0, 0].mean()) < 3.5 and float(a[:, 0, -1].mean()) < float(a[:, 0, 0].mean())
    contexts = torch.randn(3, 1, 40)
    assert m.sample(3, {"context": contexts}, generator=gen(0)).shape == (3, 1, 16)


def test_a_fitted_run_keeps_order_and_parameters_in_safetensors(tmp_path, train_tiny):
    run = train_tiny("arima", steps=5, data="sunspots")
    info = run.info()
    assert info["step"] == 1 and info["status"] == "finished" and info["parameters"] == 0
    step_dir = next((run.path / "checkpoints").glob("step-*"))
    weights = load_file(step_dir / "model.safetensors")
    assert set(weights) == {"order", "params", "context"} and weights["params"].dtype == torch.float64
    loaded = Run(run.path).load_model()
    assert torch.equal(loaded.order, weights["order"]) and loaded.fitted
    assert torch.equal(run.sample(4, seed=3), run.sample(4, seed=3))


@pytest.mark.slow
def test_forecast_beats_the_naive_forecast_on_a_noisy_sine(tmp_path, train_tiny):
    from genlab.apps.forecast import forecast

    t = torch.arange(300, dtype=torch.float64)
    values = torch.sin(2 * math.pi * t / 12) + 0.1 * torch.randn(300, generator=gen(0), dtype=torch.float64)
    (tmp_path / "sine.csv").write_text("value\n" + "\n".join(f"{v:.5f}" for v in values.tolist()))
    run = train_tiny("arima", data=f"csv:{tmp_path / 'sine.csv'}", data_options={"window": 24, "season": 12},
                     model_config={"max_p": 2, "max_q": 1, "max_P": 1, "max_Q": 0})
    result = forecast(run, horizon=12, n_paths=100, seed=0)
    assert result.season == 12
    assert result.scores["arima"]["MASE"] < 0.5 * result.scores["naive"]["MASE"], result.table()
