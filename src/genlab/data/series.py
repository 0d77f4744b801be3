"""Time series and audio: `csv:PATH[:COLUMN]`, `wav:PATH`, and the shipped series `sunspots` and `co2`.

A series is a (C, N) stream. Its last 10% (at least one window) is held out: validation is the
consecutive windows of that tail, training draws windows of `window` steps at random starts from
the head, seeded by (seed, index, rank) (`windows.py`). Batches are {"x": (B, C, window) float32}.

Series are standardised per channel by the mean and standard deviation of the training head only
(the tail must not leak into them). Those statistics are an asset of the run: a resumed run reads
them back instead of measuring again, and `series_stats_from_assets` lets forecasts be mapped back
to the original units. Audio is not standardised: 16-bit PCM is scaled by its dtype into [-1, 1].
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..batch import X, Batch
from ..config import from_dict
from ..errors import ArgumentError, DataError
from .base import DataSource, DataSpec, DatasetInfo, Kind, LoadOptions, register
from .windows import random_windows, tail_windows, window_generator

STATS_ASSET = "series_stats.json"


@dataclass(frozen=True)
class SeriesOptions:
    window: int = 64  # steps per item
    season: int | None = None  # steps per seasonal cycle (seasonal-naive forecasts, seasonal ARIMA); None: the data's own
    resample: str = ""  # series with dates (co2): "monthly", "quarterly" or "yearly", the mean of each period


# resample option -> (pandas frequency, steps per year: the season of the resampled series)
RESAMPLE = {"monthly": ("MS", 12), "quarterly": ("QS", 4), "yearly": ("YS", 1)}
# seasons of the shipped series: the ~11-year Schwabe cycle of sunspots, a year of weekly co2
SHIPPED_SEASONS = {"sunspots": 11, "co2": 52}


@dataclass(frozen=True)
class AudioOptions:
    window: int = 4096  # samples per item: half a second at 8 kHz


class Series(DataSource):
    """Random windows from the head of a (C, N) stream; consecutive windows of its tail validate."""

    def __init__(self, name: str, values: np.ndarray, window: int, val_fraction: float, *, kind: Kind = "series",
                 standardise: bool = True, saved_stats: bytes | None = None, channels: list[str] | None = None,
                 extras: dict | None = None, source: str = "", notes: list[str] | None = None):
        self.name, self.source, self.notes = name, source, list(notes or [])
        if window < 1:
            raise ArgumentError(f"window must be positive, got {window}")
        stream = torch.from_numpy(np.array(values, dtype=np.float32, ndmin=2))  # (C, N)
        n = stream.shape[1]
        n_val = max(round(n * val_fraction), window)  # at least one validation window
        if n - n_val < window:
            raise ArgumentError(f"{name} has {n} steps: too few for a window of {window} to train on and another "
                                "held out; lower window (--set train.data_options.window=...) or use a longer series")
        self.window = window
        self._assets: dict[str, bytes] = {}
        if standardise:
            mean, std = self._statistics(stream[:, : n - n_val], saved_stats, channels)
            stream = (stream - mean[:, None]) / std[:, None]
        self.train, self.val = stream[:, : n - n_val], stream[:, n - n_val :]
        extras = {"window": window, "channels": channels or [f"{i}" for i in range(len(stream))], **(extras or {})}
        self.spec = DataSpec(kind, (len(stream), window), extras=extras)

    def _statistics(self, head: torch.Tensor, saved: bytes | None, channels: list[str] | None):
        if saved is not None:
            stats = json.loads(saved)
            if len(stats["mean"]) != len(head):
                raise DataError(f"{self.name} has {len(head)} channels but the run's saved statistics have "
                                f"{len(stats['mean'])}: it was trained on other data")
            self.notes.append("standardised by the run's saved mean and std")
        else:
            std = head.std(1, unbiased=False)
            stats = {"mean": head.mean(1).tolist(), "std": torch.where(std > 0, std, 1.0).tolist(),
                     "channels": channels}
            self.notes.append("standardised by the mean and std of the training head")
        self._assets = {STATS_ASSET: json.dumps(stats).encode()}
        return torch.tensor(stats["mean"]), torch.tensor(stats["std"])

    def train_size(self) -> int:
        return self.train.shape[1] - self.window + 1  # distinct window starts

    def train_batch(self, index, batch_size, *, seed, rank=0, world_size=1, device="cpu") -> Batch:
        x = random_windows(self.train, self.window, batch_size, window_generator(seed, index, rank))  # (B, C, W)
        return {X: x.to(device, non_blocking=True)}

    def validation(self, n=None) -> Batch:
        return {X: tail_windows(self.val, self.window)[:n]}  # (K, C, W), always the same

    def assets(self) -> dict[str, bytes]:
        return dict(self._assets)


def series_stats_from_assets(assets: dict[str, bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel (mean, std) a run standardised by: x_original = x * std + mean, shapes (C,).

    Args:
        assets: the data assets of a run (`DataSource.assets()`, as the run saved them).

    Raises:
        DataError: the assets hold no statistics (the run was not trained on a standardised series).
    """
    if STATS_ASSET not in assets:
        raise DataError(f"the run's data assets hold no {STATS_ASSET}: it was not trained on a standardised series")
    stats = json.loads(assets[STATS_ASSET])
    return torch.tensor(stats["mean"]), torch.tensor(stats["std"])


def _saved(opts: LoadOptions) -> bytes | None:
    return (opts.assets or {}).get(STATS_ASSET)


def _interpolated(frame, what: str, notes: list[str]):
    """Linear interpolation of missing values (nearest value at the ends), said in the notes."""
    missing = int(frame.isna().sum().sum())
    if missing:
        notes.append(f"{missing} missing values of {what} interpolated linearly")
        frame = frame.interpolate(limit_direction="both")
    return frame


# ---------------------------------------------------------------------------------------------- csv:PATH[:COLUMN]
def _csv_path_and_column(argument: str) -> tuple[Path, str | None]:
    path = Path(argument).expanduser()
    head, sep, column = argument.rpartition(":")
    if not path.is_file() and sep and Path(head).expanduser().is_file():
        return Path(head).expanduser(), column
    return path, None


def load_csv(argument: str, opts: LoadOptions) -> Series:
    """`csv:PATH[:COLUMN]` -> a standardised series: one column (by header name or 0-based index), else
    every numeric column as a channel. A file whose first row is all numbers has no header."""
    import pandas as pd

    o = from_dict(SeriesOptions, opts.options, "csv options")
    path, column = _csv_path_and_column(argument)
    if not path.is_file():
        raise DataError(f"csv: no file {path}. Give csv:PATH or csv:PATH:COLUMN.")
    try:
        frame = pd.read_csv(path)
        if all(_is_number(c) for c in frame.columns):  # the "header" is the first row of data
            frame = pd.read_csv(path, header=None)
            frame.columns = [str(c) for c in frame.columns]
    except pd.errors.EmptyDataError:
        raise DataError(f"csv: {path} is empty.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"csv: {path} is not a readable CSV file ({e}).") from None
    names = [str(c) for c in frame.columns]
    if column is not None:
        by_index = {str(i): n for i, n in enumerate(names)}
        name = column if column in names else by_index.get(column)
        if name is None:
            raise ArgumentError(f"csv: {path} has no column '{column}'. Its columns: {', '.join(names)} "
                                "(or a 0-based index).")
        frame = frame[[name]].apply(pd.to_numeric, errors="coerce")
        if frame[name].isna().all():
            raise DataError(f"csv: column '{name}' of {path} holds no numbers.")
    else:
        frame = frame.select_dtypes("number")
        if frame.empty:
            raise DataError(f"csv: {path} has no numeric column. Name one: csv:PATH:COLUMN.")
    if len(frame) == 0:
        raise DataError(f"csv: {path} has a header but no rows.")
    if o.resample:
        raise ArgumentError(f"csv: {path} is read without dates, so it cannot be resampled; drop "
                            "train.data_options.resample and average the rows to the period you want beforehand")
    notes = [f"columns {', '.join(map(str, frame.columns))} as channels, {len(frame)} rows"]
    frame = _interpolated(frame, str(path), notes)
    label = f"csv:{path}" + (f":{column}" if column is not None else "")
    return Series(label, frame.to_numpy(np.float32).T, o.window, opts.val_fraction, saved_stats=_saved(opts),
                  channels=[str(c) for c in frame.columns], source=str(path), notes=notes,
                  extras={"season": int(o.season or 0)})


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------- shipped series
def load_shipped(name: str, opts: LoadOptions) -> Series:
    """`sunspots` (yearly, 1700-2008) or `co2` (weekly Mauna Loa, 1958-2001; `resample` monthly...) from statsmodels."""
    import pandas as pd
    from statsmodels import datasets

    o = from_dict(SeriesOptions, opts.options, f"{name} options")
    column = {"sunspots": "SUNACTIVITY", "co2": "co2"}[name]
    frame = getattr(datasets, name).load_pandas().data[[column]]
    season = SHIPPED_SEASONS[name]
    if o.resample:
        if o.resample not in RESAMPLE:
            raise ArgumentError(f"resample takes {', '.join(RESAMPLE)}, got '{o.resample}'")
        if not isinstance(frame.index, pd.DatetimeIndex):
            raise ArgumentError(f"{name} has no dates to resample by (yearly steps); drop train.data_options.resample")
        frequency, season = RESAMPLE[o.resample]
        frame = frame.resample(frequency).mean()  # a period whose every step is missing stays missing: interpolated
    notes = [f"{len(frame)} {o.resample + ' ' if o.resample else ''}steps of {column}"]
    frame = _interpolated(frame, name, notes)
    label = f"{name}-{o.resample}" if o.resample else name
    return Series(label, frame.to_numpy(np.float32).T, o.window, opts.val_fraction, saved_stats=_saved(opts),
                  channels=[column], source=f"statsmodels.datasets.{name}", notes=notes,
                  extras={"season": int(o.season if o.season is not None else season)})


# ---------------------------------------------------------------------------------------------- wav:PATH
PCM = {1: (np.uint8, 128.0, 128.0), 2: (np.dtype("<i2"), 0.0, 32768.0), 4: (np.dtype("<i4"), 0.0, 2.0**31)}
CONVERT = "Convert it to 16-bit PCM, e.g. `sox IN -b 16 -e signed-integer OUT.wav`."


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples of a PCM WAV file as float32 (N,) in [-1, 1], channels averaged to mono, and the rate."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise DataError(f"wav: {path} is not a PCM WAV file ({e}). {CONVERT}") from None
    if width not in PCM:
        raise DataError(f"wav: {path} holds {8 * width}-bit samples; 8, 16 and 32-bit PCM are read. {CONVERT}")
    dtype, offset, scale = PCM[width]
    samples = (np.frombuffer(raw, dtype=dtype).astype(np.float32) - offset) / scale
    if samples.size == 0:
        raise DataError(f"wav: {path} holds no samples.")
    return samples.reshape(-1, channels).mean(1), rate  # (N,) mono


def load_wav(path: str, opts: LoadOptions) -> Series:
    """`wav:PATH` -> mono audio windows, kind "audio", spec.extras["sample_rate"]."""
    o = from_dict(AudioOptions, opts.options, "wav options")
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"wav: no file {p}. Give wav:PATH with PATH a PCM .wav file.")
    samples, rate = read_wav(p)
    notes = [f"{len(samples)} samples at {rate} Hz ({len(samples) / rate:.1f} s), mono, scaled by dtype to [-1, 1]"]
    return Series(f"wav:{p}", samples[None], o.window, opts.val_fraction, kind="audio", standardise=False,
                  channels=["audio"], extras={"sample_rate": rate}, source=str(p), notes=notes)


WINDOW_HELP = {"window": "steps per item (default 64)",
               "season": "steps per seasonal cycle, for seasonal forecasts (default: the data's own; csv: none)"}
register(DatasetInfo("csv", "a time series from CSV: one column, or every numeric column as a channel",
                     "your file", "CxW", "none", load_csv, scheme=True, usage="csv:PATH[:COLUMN]",
                     options=WINDOW_HELP))
register(DatasetInfo("wav", "mono audio from a PCM .wav file (stereo is averaged), windows of samples",
                     "your file", "1xW", "none", load_wav, scheme=True, usage="wav:PATH",
                     options={"window": "samples per item (default 4096)"}))
register(DatasetInfo("sunspots", "yearly sunspot numbers 1700-2008 (309 steps)", "statsmodels, embedded",
                     "1xW", "none", load_shipped, options=WINDOW_HELP))
register(DatasetInfo("co2", "weekly Mauna Loa CO2 1958-2001 (2284 steps, missing weeks interpolated)",
                     "statsmodels, embedded", "1xW", "none", load_shipped,
                     options={**WINDOW_HELP, "resample": "monthly, quarterly or yearly means (monthly: season 12)"}))
