"""Writing samples to files, chosen by what a model produces (its `output_kind`), never by tensor rank.

A writer is registered for one kind and the file suffixes it writes:

    image   (N, C, H, W) in [-1, 1]      .png/.jpg/.jpeg grid, .npz `images` uint8 (N, H, W, C)
    points  (N, D)                       .png scatter of the first two coordinates, .npz `points`
    tokens  (N, T) integer ids           .txt decoded text, .npz `tokens`
    series  (N, T) or (N, C, T)          .png small multiples, .csv one column per sample, .npz `series`
    audio   (N, T) or (N, C, T) in [-1, 1]  .wav 16-bit PCM, .npz `audio` (+ `sample_rate`)

Every .npz may also hold `labels`; `genlab.imageio.load_samples` reads each of them back. Files are
written under a temporary name and renamed into place, so a reader never sees half a file.

`context` carries what some writers need beyond the samples:
    decode       tokens: a callable from one sample's ids (list[int]) to its text
    sample_rate  audio: frames per second (required for .wav)
    class_names  labels shown as names rather than numbers (tokens, series)
"""

from __future__ import annotations

import csv
import math
import os
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ArgumentError, GenlabError, UnknownNameError

WriterFunction = Callable[..., Path]  # (samples, path, *, labels, reference, context) -> path


@dataclass(frozen=True)
class Writer:
    kind: str
    suffix: str
    function: WriterFunction
    description: str


_WRITERS: dict[str, dict[str, Writer]] = {}  # kind -> suffix -> writer


def register_writer(kind: str, suffixes: str | tuple[str, ...] | list[str], function: WriterFunction,
                    description: str, *, replace: bool = False) -> None:
    """Make `function` the writer of `kind` samples to files ending in `suffixes`.

    Args:
        kind: An output kind (`image`, `points`, `tokens`, `series`, `audio` or a new one).
        suffixes: File suffixes with the dot, e.g. ".png" or (".png", ".jpg").
        function: Called as `function(samples, path, *, labels, reference, context)`; writes `path`
            (its parent exists) and returns it.
        description: A few words for error messages and help, e.g. "grid of images".
        replace: Replace a writer already registered for the same kind and suffix instead of refusing.

    Raises:
        ArgumentError: A suffix without its dot, or one already registered for this kind.
    """
    for suffix in (suffixes,) if isinstance(suffixes, str) else tuple(suffixes):
        if not suffix.startswith(".") or suffix != suffix.lower():
            raise ArgumentError(f"writer suffix '{suffix}' must be lower case and start with a dot, e.g. '.png'")
        by_suffix = _WRITERS.setdefault(kind, {})
        if suffix in by_suffix and not replace:
            raise ArgumentError(f"a writer for {kind} samples to {suffix} files is already registered; "
                                "pass replace=True to replace it")
        by_suffix[suffix] = Writer(kind, suffix, function, description)


def writers(kind: str) -> dict[str, Writer]:
    """The writers of one output kind, by suffix.

    Raises:
        UnknownNameError: No writer is registered for `kind`.
    """
    if kind not in _WRITERS:
        raise UnknownNameError("output kind", kind, list(_WRITERS))
    return dict(_WRITERS[kind])


def save_samples(samples: torch.Tensor, path: str | Path, kind: str, *, labels: torch.Tensor | None = None,
                 reference: torch.Tensor | None = None, context: dict[str, Any] | None = None) -> Path:
    """Write samples of an output kind to `path`, in the format its suffix names.

    Args:
        samples: What the model sampled, in the layout of its kind (see the module docstring).
        path: The file to write; its suffix picks the writer. Parent folders are created.
        kind: The model's `output_kind`.
        labels: Class labels of the samples (N,), stored in .npz and shown where a format can.
        reference: Real items drawn behind the samples where that helps (the points scatter).
        context: What some writers need: `decode` (tokens), `sample_rate` (audio), `class_names`.

    Returns:
        The path written.

    Raises:
        UnknownNameError: No writer is registered for `kind`.
        GenlabError: The suffix is not one this kind is written to, or the samples do not fit the kind.
    """
    path = Path(path)
    by_suffix = writers(kind)
    writer = by_suffix.get(path.suffix.lower())
    if writer is None:
        grouped: dict[str, list[str]] = {}  # one description for .png/.jpg/.jpeg
        for suffix, w in by_suffix.items():
            grouped.setdefault(w.description, []).append(suffix)
        accepted = ", ".join(f"{'/'.join(suffixes)} ({description})" for description, suffixes in grouped.items())
        raise GenlabError(f"cannot write samples of kind '{kind}' to '{path}': that kind is written to {accepted}; "
                          "choose a file name with one of these suffixes")
    path.parent.mkdir(parents=True, exist_ok=True)
    return writer.function(samples.detach().cpu(), path, labels=labels, reference=reference, context=context or {})


# ------------------------------------------------------------------ helpers shared by the writers
@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so libraries pick the format), renamed into place."""
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_shape(samples: torch.Tensor, kind: str, ranks: tuple[int, ...], layout: str) -> None:
    if samples.dim() not in ranks or len(samples) == 0:
        raise GenlabError(f"{kind} samples must be {layout} with N >= 1, got shape {tuple(samples.shape)}; "
                          f"are these really {kind} samples? (the kind comes from the model's output_kind)")


def _as_channels(samples: torch.Tensor) -> torch.Tensor:
    """(N, T) or (N, C, T) -> (N, C, T) float32."""
    return (samples[:, None] if samples.dim() == 2 else samples).float()


def _label_text(labels: torch.Tensor | None, i: int, context: dict[str, Any]) -> str | None:
    if labels is None:
        return None
    label = int(labels[i])
    names = context.get("class_names")
    return str(names[label]) if names is not None and 0 <= label < len(names) else str(label)


def _npz(path: Path, arrays: dict[str, np.ndarray], labels: torch.Tensor | None) -> Path:
    if labels is not None:
        arrays["labels"] = labels.cpu().numpy()
    with _atomic(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def _figure(figsize: tuple[float, float]):
    # A bare Figure, not pyplot: no global backend switch, no figure left open, safe in threads.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=100)


# ------------------------------------------------------------------ image
def _image_grid(samples, path, *, labels, reference, context) -> Path:
    from .imageio import save_grid

    _check_shape(samples, "image", (4,), "(N, C, H, W)")
    with _atomic(path) as tmp:
        save_grid(samples, tmp)
    return path


def _image_npz(samples, path, *, labels, reference, context) -> Path:
    from .imageio import to_uint8

    _check_shape(samples, "image", (4,), "(N, C, H, W)")
    return _npz(path, {"images": to_uint8(samples)}, labels)  # (N, H, W, C): the layout most tools read


# ------------------------------------------------------------------ points
def save_scatter(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None) -> Path:
    """Scatter plot of the first two coordinates of (N, D) points, over the reference data in grey."""
    fig = _figure((4, 4))
    ax = fig.subplots()
    if reference is not None:
        ax.scatter(*reference[:, :2].detach().cpu().float().T.numpy(), s=2, c="#bbbbbb", label="data")
    ax.scatter(*points[:, :2].detach().cpu().float().T.numpy(), s=2, c="#1f77b4", label="samples")
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _points_scatter(samples, path, *, labels, reference, context) -> Path:
    _check_shape(samples, "points", (2,), "(N, D)")
    if samples.shape[1] < 2:
        raise GenlabError(f"a scatter plot needs at least 2 coordinates per point, got shape {tuple(samples.shape)}; "
                          "write these points to .npz instead")
    with _atomic(path) as tmp:
        save_scatter(samples, tmp, reference if reference is not None and reference.dim() == 2 else None)
    return path


def _points_npz(samples, path, *, labels, reference, context) -> Path:
    _check_shape(samples, "points", (2,), "(N, D)")
    return _npz(path, {"points": samples.float().numpy()}, labels)


# ------------------------------------------------------------------ tokens
def _check_tokens(samples: torch.Tensor) -> None:
    _check_shape(samples, "tokens", (2,), "(N, T) integer ids")
    if samples.is_floating_point() or samples.is_complex():
        raise GenlabError(f"token samples must be integer ids, got {samples.dtype}; "
                          "are these really token samples? (the kind comes from the model's output_kind)")


def _tokens_text(samples, path, *, labels, reference, context) -> Path:
    _check_tokens(samples)
    decode = context.get("decode")
    blocks = []
    for i, ids in enumerate(samples.tolist()):
        text = decode(ids) if decode is not None else " ".join(map(str, ids))
        label = _label_text(labels, i, context)
        blocks.append(f"[{label}]\n{text}" if label is not None else text)
    with _atomic(path) as tmp:
        tmp.write_text(("\n" + "-" * 40 + "\n").join(blocks) + "\n", encoding="utf-8")
    return path


def _tokens_npz(samples, path, *, labels, reference, context) -> Path:
    _check_tokens(samples)
    return _npz(path, {"tokens": samples.numpy().astype(np.int64)}, labels)


# ------------------------------------------------------------------ series
MAX_PLOTTED_SERIES = 16


def _series_plot(samples, path, *, labels, reference, context) -> Path:
    _check_shape(samples, "series", (2, 3), "(N, T) or (N, C, T)")
    x = _as_channels(samples)[:MAX_PLOTTED_SERIES].numpy()  # (n, C, T)
    n = len(x)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = _figure((2.4 * cols, 1.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).reshape(-1)
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        for channel in x[i]:  # one line per channel of the sample
            ax.plot(channel, linewidth=0.8)
        label = _label_text(labels, i, context)
        ax.set_title(label if label is not None else f"sample {i}", fontsize=7)
        ax.tick_params(labelsize=6)
    if len(samples) > n:
        fig.suptitle(f"the first {n} of {len(samples)} samples", fontsize=8)
    fig.tight_layout()
    with _atomic(path) as tmp:
        fig.savefig(tmp)
    return path


def _series_csv(samples, path, *, labels, reference, context) -> Path:
    _check_shape(samples, "series", (2, 3), "(N, T) or (N, C, T)")
    x = _as_channels(samples).numpy()  # (N, C, T)
    n, c, t = x.shape
    header = [f"sample_{i}" if c == 1 else f"sample_{i}_channel_{j}" for i in range(n) for j in range(c)]
    columns = x.reshape(n * c, t)
    with _atomic(path) as tmp:
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(header)
            out.writerows([format(v, ".7g") for v in row] for row in columns.T)
    return path


def _series_npz(samples, path, *, labels, reference, context) -> Path:
    _check_shape(samples, "series", (2, 3), "(N, T) or (N, C, T)")
    return _npz(path, {"series": samples.float().numpy()}, labels)


# ------------------------------------------------------------------ audio
GAP_SECONDS = 0.25


def _audio_wav(samples, path, *, labels, reference, context) -> Path:
    """All samples in one file, one after another, each followed by 0.25 s of silence but the last.

    One file keeps `save_samples` to one path for every kind; the .npz keeps the samples apart.
    """
    _check_shape(samples, "audio", (2, 3), "(N, T) or (N, C, T)")
    rate = context.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise GenlabError(f"writing audio to .wav needs context['sample_rate'] (a positive integer, frames per "
                          f"second), got {rate!r}; pass the data's sample rate, or write .npz instead")
    x = _as_channels(samples)  # (N, C, T)
    pcm = (x.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
    channels = pcm.shape[1]
    gap = np.zeros((int(GAP_SECONDS * rate), channels), dtype="<i2")
    pieces = []
    for i, sample in enumerate(pcm):
        if i:
            pieces.append(gap)
        pieces.append(sample.T.astype("<i2"))  # (T, C): wav interleaves channels frame by frame
    with _atomic(path) as tmp:
        with wave.open(str(tmp), "wb") as f:
            f.setnchannels(channels)
            f.setsampwidth(2)
            f.setframerate(int(rate))
            f.writeframes(np.concatenate(pieces).tobytes())
    return path


def _audio_npz(samples, path, *, labels, reference, context) -> Path:
    _check_shape(samples, "audio", (2, 3), "(N, T) or (N, C, T)")
    arrays = {"audio": samples.float().numpy()}
    if context.get("sample_rate"):
        arrays["sample_rate"] = np.asarray(int(context["sample_rate"]))
    return _npz(path, arrays, labels)


register_writer("image", (".png", ".jpg", ".jpeg"), _image_grid, "grid of images")
register_writer("image", ".npz", _image_npz, "uint8 array 'images' (N, H, W, C)")
register_writer("points", ".png", _points_scatter, "scatter plot")
register_writer("points", ".npz", _points_npz, "float32 array 'points' (N, D)")
register_writer("tokens", ".txt", _tokens_text, "decoded text, one sample per block")
register_writer("tokens", ".npz", _tokens_npz, "int64 array 'tokens' (N, T)")
register_writer("series", ".png", _series_plot, "plot of up to 16 samples")
register_writer("series", ".csv", _series_csv, "one column per sample")
register_writer("series", ".npz", _series_npz, "float32 array 'series'")
register_writer("audio", ".wav", _audio_wav, "16-bit PCM, samples one after another")
register_writer("audio", ".npz", _audio_npz, "float32 array 'audio' and 'sample_rate'")
