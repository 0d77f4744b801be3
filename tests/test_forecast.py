"""genlab.eval.forecasting (MASE, sMAPE, naive forecasts, against hand-computed values), genlab.apps.forecast,
`genlab forecast` end to end, and the monthly resampling of co2 that the forecast benchmark uses."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import ArgumentError
from genlab.eval.forecasting import (coverage, forecast_scores, mase, naive_forecast, seasonal_naive_forecast,
                                     smape)


def series(*values: float) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float64)


# ------------------------------------------------------------------ scores against hand values
def test_naive_and_seasonal_naive_forecasts():
    history = series(1, 2, 3, 4, 5, 6, 7)
    assert naive_forecast(history, 3).tolist() == [[7, 7, 7]]
    # season 3: the last season is 5, 6, 7, repeated
    assert seasonal_naive_forecast(history, 5, 3).tolist() == [[5, 6, 7, 5, 6]]
    assert seasonal_naive_forecast(history, 2, 1).tolist() == [[7, 7]]


def test_mase_by_hand():
    history = series(1, 3, 2, 4)  # one-step naive errors 2, 1, 2: scale 5/3
    actual, forecast = series(5, 6), series(4, 8)  # absolute errors 1, 2: MAE 1.5
    assert math.isclose(mase(actual, forecast, history), 1.5 / (5 / 3))
    # season 2: in-sample errors |2-1|, |4-3| = 1, 1: scale 1
    assert math.isclose(mase(actual, forecast, history, season=2), 1.5)
    with pytest.raises(ArgumentError, match="constant or exactly periodic"):
        mase(actual, forecast, series(2, 2, 2))


def test_smape_by_hand():
    actual, forecast = series(100, 200, 0), series(110, 150, 0)
    # 2*10/210, 2*50/350, and 0 where both are 0; mean, in percent
    expected = 100 * (20 / 210 + 100 / 350 + 0) / 3
    assert math.isclose(smape(actual, forecast), expected)
    assert smape(series(1, 2), series(1, 2)) == 0.0
    assert math.isclose(smape(series(1), series(-1)), 200.0)  # the M4 sMAPE is bounded by 200%


def test_scores_table_includes_both_baselines_and_coverage():
    history = series(1, 5, 2, 5, 1, 5)
    actual = series(1, 5)
    scores = forecast_scores(actual, {"model": series(1, 5)}, history, season=2)
    assert scores["model"] == {"MASE": 0.0, "sMAPE": 0.0}
    assert scores["seasonal naive"]["MASE"] == 0.0 and scores["naive"]["MASE"] > 0  # naive repeats 5, 5
    assert coverage(actual, series(0, 6), series(2, 7)) == 0.5
    with pytest.raises(ArgumentError, match="one value per channel and step"):
        smape(actual, series(1, 2, 3))


# ------------------------------------------------------------------ the application
@pytest.fixture(scope="module")
def arima_run(tmp_path_factory):
    import genlab

    from conftest import TINY_TRAIN_OPTIONS, tiny_config

    t = torch.arange(240, dtype=torch.float64)
    values = 10 + torch.sin(2 * math.pi * t / 12) + 0.1 * torch.randn(240, generator=torch.Generator().manual_seed(0),
                                                                       dtype=torch.float64)
    root = tmp_path_factory.mktemp("forecast")
    (root / "sine.csv").write_text("value\n" + "\n".join(f"{v:.5f}" for v in values.tolist()))
    return genlab.train("arima", f"csv:{root / 'sine.csv'}", out=root / "run", steps=1, progress=False,
                        model_config=tiny_config("arima"), **{**TINY_TRAIN_OPTIONS, "data_options": {"window": 24, "season": 12}})


def test_forecast_gives_paths_intervals_and_scores_in_the_series_units(arima_run, tmp_path):
    from genlab.apps.forecast import forecast, plot_forecast

    result = forecast(arima_run, horizon=12, n_paths=40, seed=0)
    assert result.paths.shape == (40, 1, 12) and result.median.shape == result.actual.shape == (1, 12)
    assert 8 < float(result.history.mean()) < 12  # back in the CSV's units, not standardised ones
    lo80, hi80 = result.intervals[80]
    lo95, hi95 = result.intervals[95]
    assert (lo95 <= lo80).all() and (lo80 <= result.median).all() and (result.median <= hi80).all() and (hi80 <= hi95).all()
    assert set(result.scores) == {"arima", "naive", "seasonal naive"} and result.season == 12
    assert "MASE" in result.table() and "seasonal naive" in result.table()
    assert torch.equal(forecast(arima_run, horizon=12, n_paths=40, seed=0).paths, result.paths)
    path = plot_forecast(result, tmp_path / "plot.png")
    assert path.stat().st_size > 5000


def test_rolling_origins_average_the_scores_and_keep_the_first_origins_paths(arima_run):
    from genlab.apps.forecast import forecast

    single = forecast(arima_run, horizon=6, n_paths=20, seed=1)
    rolling = forecast(arima_run, horizon=6, n_paths=20, seed=1, origins=3)
    assert rolling.origins == 3 and torch.equal(rolling.paths, single.paths)
    assert rolling.scores["arima"] != single.scores["arima"] and "mean over 3 origins" in rolling.table()
    # the seasonal-naive score by hand: the mean over the three origins of its MASE
    from genlab.api import load_run_data
    from genlab.data.series import series_stats_from_assets

    data = load_run_data(arima_run)
    mean, std = series_stats_from_assets(arima_run.assets())
    head, tail = data.train * std + mean, data.val * std + mean
    by_hand = sum(mase(tail[:, k : k + 6], seasonal_naive_forecast(torch.cat([head, tail[:, :k]], 1), 6, 12),
                       torch.cat([head, tail[:, :k]], 1), 12) for k in range(3)) / 3
    assert math.isclose(rolling.scores["seasonal naive"]["MASE"], by_hand, rel_tol=1e-6)
    with pytest.raises(ArgumentError, match="choose --horizon 22 or less, fewer --origins"):
        forecast(arima_run, horizon=23, origins=3)


def test_forecast_refuses_a_horizon_beyond_the_tail_and_a_model_that_does_not_forecast(arima_run, train_tiny):
    from genlab.apps.forecast import forecast

    with pytest.raises(ArgumentError, match="choose --horizon 24 or less"):
        forecast(arima_run, horizon=25)
    vae = train_tiny("vae", steps=1)
    with pytest.raises(ArgumentError, match="draws no forecasts"):
        forecast(vae, horizon=4)


@pytest.mark.slow
def test_cli_forecast_prints_the_scores_and_writes_the_plot(arima_run, genlab_cli, tmp_path):
    done = genlab_cli("forecast", arima_run.path, "--horizon", "12", "--paths", "30", "--out", "plot.png")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "seasonal naive" in done.stdout and "arima" in done.stdout and "MASE" in done.stdout
    assert (tmp_path / "plot.png").exists()
    refused = genlab_cli("forecast", arima_run.path, "--horizon", "100")
    assert refused.returncode == 2 and "choose --horizon 24 or less" in refused.stderr and "Traceback" not in refused.stderr


# ------------------------------------------------------------------ data for the benchmark
def test_co2_resampled_monthly_has_a_season_of_twelve():
    from genlab.data.base import LoadOptions, load_data

    weekly = load_data("co2")
    monthly = load_data("co2", LoadOptions(options={"resample": "monthly"}))
    assert weekly.spec.extras["season"] == 52 and monthly.spec.extras["season"] == 12
    assert monthly.train.shape[1] + monthly.val.shape[1] == 526 and monthly.name == "co2-monthly"
    assert load_data("sunspots").spec.extras["season"] == 11
    with pytest.raises(ArgumentError, match="monthly, quarterly, yearly"):
        load_data("co2", LoadOptions(options={"resample": "daily"}))
    with pytest.raises(ArgumentError, match="no dates to resample"):
        load_data("sunspots", LoadOptions(options={"resample": "monthly"}))
