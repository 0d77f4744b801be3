"""Evaluate a run, an .npz of samples, a folder of images or a tensor: one call, every measure, one protocol.

    genlab.evaluate("runs/ddpm-mnist", n=10_000)                   # samples (timed), then measures
    genlab.evaluate("samples.npz", data="mnist")                    # any images, from any tool
    evaluate_steps("runs/ddpm-mnist", steps=[20, 50, 250], sampler=...)  # quality against sampler steps

Each evaluation is one entry: the protocol, the feature network (with its held-out accuracy), the scores,
the class histograms, memorisation, likelihood, speed and the seconds each part took. Entries are appended
to eval.json in the run directory (NAME.eval.json beside an .npz, eval.json in an image folder), so
results accumulate per run; `genlab report` reads them. Images are rounded to 8 bits before they are
measured, as saving them would, so in-memory samples and their .npz score the same.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import __version__
from ..data import Dataset, load_dataset
from ..errors import EvalInputError, GenlabError
from ..registry import get_model_class
from ..runs import Run, resolve_device
from . import coverage, frechet
from .features import FeatureExtractor, feature_extractor, quantize
from .memorization import memorization as memorization_scores
from .prdc import prdc
from .protocol import Protocol, Reference, reference_stats

DEFAULT_N = 10_000


# ---------------------------------------------------------------------------------------------- inputs
def check_samples(x: torch.Tensor, dataset: Dataset) -> None:
    """Raise EvalInputError unless `x` is a non-empty, finite batch of items shaped like the dataset's."""
    if not isinstance(x, torch.Tensor):
        raise EvalInputError(f"samples must be a torch.Tensor, got {type(x).__name__}")
    if x.numel() == 0 or len(x) == 0:
        raise EvalInputError("there are no samples to evaluate (the array is empty); sample some first, "
                             "e.g. `genlab sample RUN -n 10000 --out samples.npz`")
    if not x.is_floating_point():
        raise EvalInputError(f"samples must be floats in the data range ([-1, 1] for images), got dtype {x.dtype}; "
                             "convert 8-bit images with x.float() / 127.5 - 1")
    bad = int((~torch.isfinite(x.flatten(1))).any(1).sum())
    if bad:
        raise EvalInputError(f"{bad} of {len(x)} samples contain NaN or infinite values: the model (or the tool that "
                             "wrote them) produced invalid output. Sample from an earlier checkpoint "
                             "(--checkpoint best or step-N), or drop those items.")
    if dataset.kind == "image" and (x.min() < -1.5 or x.max() > 1.5):  # clamping would hide a wrong scale
        raise EvalInputError(f"image samples must lie in [-1, 1], these span [{float(x.min()):.3g}, {float(x.max()):.3g}]; "
                             "rescale them (x / 127.5 - 1 for 0..255)")
    want = tuple(dataset.shape)
    got = tuple(x.shape[1:])
    if got == want:
        return
    if dataset.kind == "image" and len(got) == 3 and got[0] != want[0]:
        raise EvalInputError(f"samples have {got[0]} channel(s) but {dataset.name} images have {want[0]}: convert them "
                             f"({'to grayscale' if want[0] == 1 else 'to RGB'}) or evaluate against a dataset with "
                             f"{got[0]} channel(s)")
    raise EvalInputError(f"samples of shape {got} cannot be compared with {dataset.name} items of shape {want}. "
                         f"Resize the samples to {want}, or load the data at their size (--image-size {got[-1]}).")


def open_source(source) -> tuple[str, Run | None, Path | None]:
    """-> (kind, run, path); kind is "run", "npz", "folder" or "tensor"."""
    if isinstance(source, Run):
        return "run", source, source.path
    if isinstance(source, torch.Tensor):
        return "tensor", None, None
    path = Path(source)
    if path.suffix == ".npz":
        if not path.exists():
            raise EvalInputError(f"no such file: {path}")
        return "npz", None, path
    if (path / "config.yaml").exists():
        return "run", Run(path), path
    if path.is_dir():
        return "folder", None, path
    raise EvalInputError(f"'{path}' is neither a run directory (with config.yaml), an .npz of samples nor a folder "
                         "of images")


def read_images(folder: str | Path, shape: tuple[int, ...]) -> tuple[list[str], torch.Tensor]:
    """Every image file under `folder` (sorted names), or the one file it names, converted to `shape` (C, S, S),
    in [-1, 1].

    Colour mode and size follow `shape`: many tools write grayscale samples as RGB files (torchvision's
    save_image does), so a folder is read the way the data is. Arrays get no such conversion: there a
    wrong shape is an error.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from ..data.images import IMAGE_SUFFIXES

    root = Path(folder).expanduser()
    if root.is_file():
        files, root = [root], root.parent
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise EvalInputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{root}'")
    mode = "L" if shape[0] == 1 else "RGB"
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert(mode).resize((shape[-1], shape[-2]), Image.BICUBIC), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise EvalInputError(f"{f} is not a readable image ({e}); remove it") from None
        arrays.append(a[None] if mode == "L" else a.transpose(2, 0, 1))
    x = torch.from_numpy(np.stack(arrays).astype(np.float32)) / 127.5 - 1
    return [str(f.relative_to(root)) for f in files], x


def array_samples(kind: str, path: Path | None, source, dataset: Dataset, n: int | None,
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first n items (all if n is None) of an .npz, a folder or a tensor, and their labels if any."""
    if kind == "npz":
        from ..imageio import load_samples

        x, file_labels = load_samples(path)
        labels = labels if labels is not None else file_labels
    elif kind == "folder":
        _, x = read_images(path, dataset.shape)
    else:
        x = source.detach().cpu()
    n = len(x) if n is None else min(n, len(x))
    return x[:n], (None if labels is None else torch.as_tensor(labels)[:n])


# what the sample-based measures (features, FID, precision/recall, coverage) apply to
MEASURED_KINDS = ("image", "points")


def dataset_for(kind: str, run: Run | None, data: str | None, data_dir: str | None) -> Dataset:
    if data is None and run is None:
        raise EvalInputError("name the data to compare with: --data NAME (e.g. --data mnist)")
    if run is not None and run.spec.kind not in MEASURED_KINDS:
        raise EvalInputError(f"{run.path} produces {run.spec.kind}; `genlab eval` measures "
                             f"{' and '.join(MEASURED_KINDS)} samples so far. Its training metrics "
                             f"(metrics.jsonl, `genlab info`) hold its validation figures.")
    if run is not None and (data is None or data == run.train_config.data):
        cfg = run.train_config
        return load_dataset(cfg.data, data_dir=data_dir or cfg.data_dir, image_size=cfg.image_size, seed=cfg.seed,
                            options=cfg.data_options)
    return load_dataset(data, data_dir=data_dir)


# ---------------------------------------------------------------------------------------------- measures
def measure(samples: torch.Tensor, dataset: Dataset, extractor: FeatureExtractor, reference: Reference, *,
            requested: torch.Tensor | None = None, k: int = 5, kid_subsets: int = 100, kid_subset_size: int = 1000,
            seed: int = 0, memorization: bool = True) -> dict[str, Any]:
    """Every sample-based measure of `samples` against the reference -> {"scores", "timings", extras...}."""
    check_samples(samples, dataset)
    x = quantize(samples) if dataset.kind == "image" else samples.float()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    feats, logits = extractor(x)
    lap("features")
    mu, sigma = frechet.feature_statistics(feats)
    scores: dict[str, Any] = {"fid": frechet.frechet_distance(reference.mu, reference.sigma, mu, sigma)}
    lap("fid")
    kid_mean, kid_std, kid_m = frechet.kid(reference.features, feats, kid_subsets, kid_subset_size, seed)
    scores.update(kid_mean=kid_mean, kid_std=kid_std)
    lap("kid")
    scores.update(prdc(reference.features, feats, k, real_radii_sq=reference.radii(k)))
    lap("prdc")
    out: dict[str, Any] = {"scores": scores, "timings": timings, "kid_subset_size": kid_m}
    if logits is not None and extractor.num_classes and reference.predicted is not None:
        cls = coverage.class_coverage(logits.argmax(1), reference.predicted, extractor.num_classes, requested)
        out["class_histogram"], out["data_class_histogram"] = cls.pop("class_histogram"), cls.pop("data_class_histogram")
        scores.update(cls)
    known_modes = dataset.spec.extras.get("mode_centers")  # data with known modes (8gaussians) says so itself
    if known_modes is not None:
        modes = coverage.toy_mode_coverage(x, torch.tensor(known_modes, dtype=torch.float32),
                                           float(dataset.spec.extras["mode_std"]))
        out["mode_counts"] = modes.pop("mode_counts")
        scores.update(modes)
    lap("coverage")
    if memorization:
        mem, pairs = memorization_scores(x, dataset.x_train, dataset.x_val)
        scores["memorized_share"] = mem["memorized_share"]
        out["memorization"], out["memorization_pairs"] = mem, pairs
        lap("memorization")
    return out


# ---------------------------------------------------------------------------------------------- orchestration
def evaluate(source: str | Path | Run | torch.Tensor, data: str | None = None, *, n: int | None = None,
             steps: int | None = None, **options: Any) -> dict[str, Any]:
    """Measure quality, diversity, coverage, memorisation, likelihood and speed of a run or of samples.

    Args:
        source: a run directory (or `Run`): samples are drawn and timed; an .npz (genlab's or another
            tool's `images`/`arr_0`/`points`, optional `labels`); a folder of images; or a tensor in [-1, 1].
        data: the dataset to compare with (default: the run's own).
        n: number of samples (default 10,000 for runs; all of them for arrays and folders).
        steps: sampler steps (diffusion); see `evaluate_steps` for several.
        **options: sampler (one the model has), eta, guidance, seed (0), batch_size (500), checkpoint ("latest"),
            labels (tensor of requested classes for arrays), data_dir, features ("auto" or a local Inception
            weights file), reference ("train" or "val"), reference_size (10,000), k (5), kid_subsets (100),
            kid_subset_size (1000), likelihood (True), likelihood_n (1000), likelihood_options (the model's own,
            e.g. {"k": 1000} for a VAE's importance-weighted bound), memorization (True),
            device, write (True: append to eval.json), out (where eval.json goes), progress,
            classifier (a noise-classifier run guiding a diffusion run towards each class; guidance is its scale),
            precision ("auto", "fp32", "bf16", "fp16": the sampling network's; measures stay float32),
            compile (None: where it pays; True/False).

    Returns:
        The eval.json entry: {"protocol", "features", "scores", "speed", "likelihood", "memorization",
        "timings", ...}.
    """
    return evaluate_steps(source, data, n=n, steps=[steps], **options)[0]


def evaluate_steps(source, data: str | None = None, *, n: int | None = None, steps: Sequence[int | None] = (None,),
                   sampler: str | None = None, eta: float = 0.0, guidance: float = 1.0, seed: int = 0,
                   batch_size: int = 500, checkpoint: str = "latest", labels: torch.Tensor | None = None,
                   data_dir: str | None = None, features: str | FeatureExtractor = "auto", reference: str = "train",
                   reference_size: int = 10_000, k: int = 5, kid_subsets: int = 100, kid_subset_size: int = 1000,
                   likelihood: bool = True, likelihood_n: int = 1000, likelihood_options: dict | None = None,
                   memorization: bool = True, device: str | None = None, write: bool = True,
                   out: str | Path | None = None, progress: bool = False, precision: str = "auto",
                   compile: bool | None = None, classifier: str | Path | None = None) -> list[dict[str, Any]]:
    """`evaluate` once per entry of `steps` (quality against sampler steps), sharing data and reference."""
    kind, run, path = open_source(source)
    if kind == "run" and run.spec.kind not in MEASURED_KINDS and run.has_checkpoint() \
            and get_model_class(run.model_name).likelihood != "none":
        from .heldout import evaluate_heldout_run

        # no sample-based yardstick for text or series yet: their held-out likelihood and speed
        return [evaluate_heldout_run(run, checkpoint=checkpoint, data_dir=data_dir, device=device, precision=precision,
                                     seed=seed, write=write, out=out)]
    if kind != "run" and any(s is not None for s in steps):
        raise EvalInputError("--steps and --sampler apply to runs (genlab samples them); an array is already sampled")
    if kind == "run" and not run.has_checkpoint():
        raise EvalInputError(f"run {run.path} has no checkpoint to evaluate: train it first "
                             f"(`genlab train --resume {run.path} --steps N`)")
    dataset = dataset_for(kind, run, data, data_dir)
    dev = resolve_device(device or "auto")
    t0 = time.perf_counter()
    extractor = feature_extractor(dataset, features, device=dev, progress=progress)
    ref = reference_stats(extractor, dataset, reference, reference_size)
    setup_seconds = round(time.perf_counter() - t0, 3)

    fixed = None
    if kind != "run":
        fixed, labels = array_samples(kind, path, source, dataset, n, labels)

    entries = []
    lik = None  # the held-out likelihood does not depend on the sampler: measured once
    for s in steps:
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        speed = None
        model_info: dict[str, Any] = {}
        if kind == "run":
            samples, labels_used, speed, sampling, model = _sample_run(run, n or DEFAULT_N, sampler, s, eta, guidance,
                                                                       seed, batch_size, checkpoint, dev, progress,
                                                                       precision, compile, classifier,
                                                                       real={"x": dataset.x_val})
            model_info = {"model": run.model_name, "checkpoint": checkpoint, "checkpoint_step": model.checkpoint_step,
                          "parameters": sum(p.numel() for p in model.parameters()),
                          "train_seconds": run.info()["train_seconds"]}
        else:
            samples, labels_used, sampling, model = fixed, labels, {"sampler": None, "steps": None}, None
        t1 = time.perf_counter()
        result = measure(samples, dataset, extractor, ref, requested=labels_used, k=k, kid_subsets=kid_subsets,
                         kid_subset_size=kid_subset_size, seed=seed, memorization=memorization)
        measure_seconds = time.perf_counter() - t1
        if model is not None and likelihood and lik is None:
            t2 = time.perf_counter()
            from .likelihood import held_out_bits_per_dim

            lik = held_out_bits_per_dim(model, dataset.x_val, dataset.y_val, n=likelihood_n, seed=seed,
                                        options=likelihood_options)
            result["timings"]["likelihood"] = round(time.perf_counter() - t2, 3)
        if lik and "bits_per_dim" in lik:
            result["scores"]["bits_per_dim"] = lik["bits_per_dim"]
        if speed:
            result["scores"]["samples_per_sec"] = speed["samples_per_sec"]
        protocol = Protocol(extractor.name, extractor.sha256, dataset.name, ref.split, ref.size, len(samples), k,
                            kid_subsets, result["kid_subset_size"], sampling["sampler"], sampling["steps"], seed)
        entry = {
            "time": started, "genlab_version": __version__, "source": str(path) if path else "tensor", "kind": kind,
            **({"run": model_info} if model_info else {}),
            "protocol": protocol.to_dict(),
            "sampling": sampling,
            "features": extractor.describe(),
            "scores": result["scores"],
            "class_histogram": result.get("class_histogram"),
            "data_class_histogram": result.get("data_class_histogram"),
            "mode_counts": result.get("mode_counts"),
            "memorization": result.get("memorization"),
            "likelihood": lik,
            "speed": speed,
            "timings": {**result["timings"], "setup_features_and_reference": setup_seconds,
                        "measures_total": round(measure_seconds, 3)},
        }
        entries.append(entry)
        if write and (kind != "tensor" or out is not None):
            _save_outputs(entry, samples, result.get("memorization_pairs"), output_path(kind, path, out), dataset)
    return entries


def _sample_run(run: Run, n, sampler, steps, eta, guidance, seed, batch_size, checkpoint, device, progress,
                precision="auto", compile=None, classifier=None, real=None):
    from ..runs import load_run_options
    from .speed import timed_sampling

    model = run.load_model(checkpoint, device=device)
    defaults = model.sample_options()
    if (sampler is not None or steps is not None) and "sampler" not in defaults:
        raise EvalInputError(f"{run.model_name} samples in one pass: it has no sampler or steps to choose; "
                             "drop --sampler/--steps")
    given = {"sampler": sampler, "steps": steps, "eta": eta or None,
             "guidance_scale": guidance if guidance != 1.0 else None, "classifier": classifier}
    try:
        options = model.sample_options(**given)
    except ValueError as e:
        raise GenlabError(f"cannot sample {run.path}: {e}") from None
    # e.g. every class equally (coverage is then measurable); real held-out images for an upscaler
    conditions = model.evaluation_conditions(n, real=real, **options)
    options = load_run_options(model, options)
    labels = conditions.get("label") if conditions else None
    try:
        samples, speed = timed_sampling(model, n, batch_size=batch_size, seed=seed, conditions=conditions,
                                        options=options, progress=progress, precision=precision, compile=compile)
    except ValueError as e:  # the model's own message, e.g. a sampler it does not have
        raise GenlabError(f"cannot sample {run.path}: {e}") from None
    sampling = {"sampler": options.get("sampler", "direct"), "steps": options.get("steps", 1),
                **{k: options[k] for k in ("eta", "guidance_scale") if k in options},
                **({"classifier": str(classifier)} if classifier else {}),
                "precision": speed["precision"], "compiled": speed["compiled"]}
    return samples, labels, speed, sampling, model


# ---------------------------------------------------------------------------------------------- outputs
def output_path(kind: str, path: Path | None, out: str | Path | None, name: str = "eval") -> Path:
    """Where results accumulate: RUN/eval.json, NAME.eval.json beside an .npz, or `out`."""
    if out is not None:
        out = Path(out)
        return out if out.suffix == ".json" else out / f"{name}.json"
    if kind == "npz":
        return path.with_name(f"{path.stem}.{name}.json")
    return path / f"{name}.json"


def _save_outputs(entry: dict, samples: torch.Tensor, pairs: torch.Tensor | None, json_path: Path,
                  dataset: Dataset) -> None:
    """Sample grid and closest-pairs picture beside eval.json (paths relative to it), then append the entry."""
    from ..imageio import save_grid
    from ..outputs import save_samples

    p = entry["protocol"]
    # every sampling option that changes the samples is in the name, so one evaluation never overwrites another's grid
    sampling = entry.get("sampling") or {}
    extra = "".join(f"-{short}{sampling[key]:g}" for key, short in (("eta", "eta"), ("guidance_scale", "g")) if sampling.get(key))
    extra += f"-{Path(sampling['classifier']).name}" if sampling.get("classifier") else ""
    tag = f"{p['sampler'] or 'samples'}-{p['steps'] or 0}{extra}-n{p['num_samples']}-seed{p['seed']}"
    fig_dir = json_path.parent / (json_path.name.removesuffix(".json") + "-figures")
    grid = save_samples(samples[:64], fig_dir / f"samples-{tag}.png", dataset.kind,
                        reference=dataset.x_val[:1000] if dataset.kind == "points" else None)
    entry["files"] = {"samples": str(grid.relative_to(json_path.parent))}
    if pairs is not None and dataset.kind == "image":
        half = len(pairs) // 2
        mem = save_grid(pairs, fig_dir / f"memorization-{tag}.png", nrow=half)  # top row samples, bottom row nearest
        entry["files"]["memorization"] = str(mem.relative_to(json_path.parent))
    append_entry(json_path, entry)
    entry["written_to"] = str(json_path)  # for the caller; not part of the stored entry


def read_entries(json_path: str | Path) -> list[dict[str, Any]]:
    """Entries of an eval.json (empty when missing)."""
    json_path = Path(json_path)
    if not json_path.exists():
        return []
    try:
        return list(json.loads(json_path.read_text())["entries"])
    except (ValueError, KeyError, TypeError) as e:
        raise EvalInputError(f"{json_path} is not a genlab eval.json ({e}); move it away and evaluate again") from None


def append_entry(json_path: Path, entry: dict[str, Any]) -> None:
    entries = read_entries(json_path) + [entry]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(json_path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"entries": entries}, indent=1))
    os.replace(tmp, json_path)


# ---------------------------------------------------------------------------------------------- printing
ROWS = [  # (score key, label, format)
    ("fid", "FID (lower is better)", "{:.3f}"),
    ("kid_mean", "KID x 1000", "kid"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("density", "density", "{:.3f}"),
    ("coverage", "coverage", "{:.3f}"),
    ("class_entropy", "class entropy (nats)", "{:.3f}"),
    ("class_kl", "class KL(samples||data)", "{:.4f}"),
    ("classes_covered", "classes covered", "{:d}"),
    ("conditional_accuracy", "conditional accuracy", "{:.3f}"),
    ("high_quality_share", "high-quality share (3 std)", "{:.3f}"),
    ("modes_covered", "modes covered", "{:d}"),
    ("memorized_share", "memorised share", "{:.4f}"),
    ("bits_per_dim", "bits/dim (held-out)", "{:.4f}"),
    ("samples_per_sec", "samples/s", "{:.1f}"),
]


def _cell(entry: dict, key: str, fmt: str) -> str:
    s = entry["scores"]
    if key not in s or s[key] is None:
        return "-"
    if fmt == "kid":
        return f"{1000 * s['kid_mean']:.3f} +- {1000 * s['kid_std']:.3f}"
    if key == "bits_per_dim" and entry.get("likelihood"):
        return f"{s[key]:.4f} ({entry['likelihood']['kind']})"
    return fmt.format(s[key])


def summary(entries: list[dict[str, Any]]) -> str:
    """A plain-text table of entries (one column each) with the protocol and the yardstick above it."""
    first = entries[0]
    if first.get("kind") == "heldout":
        from .heldout import heldout_summary

        return heldout_summary(first)
    f, p = first["features"], first["protocol"]
    acc = f"{100 * f['accuracy']:.1f}% {f['accuracy_note']}" if f.get("accuracy") is not None else f["accuracy_note"]
    lines = [
        f"source     {first['source']}"
        + (f"  ({first['run']['model']}, step {first['run']['checkpoint_step']})" if "run" in first else ""),
        f"features   {f['name']}  sha256 {f['sha256'][:12]}  {acc}",
        "           (FIDs from different feature networks, or other weights, are not comparable)",
        f"reference  {p['data']} {p['reference_split']} split, {p['reference_size']} items; "
        f"{p['num_samples']} samples, seed {p['seed']}, k={p['k']}, KID {p['kid_subsets']} x {p['kid_subset_size']}",
    ]
    headers = [f"{e['protocol']['sampler'] or 'samples'}" + (f"-{e['protocol']['steps']}" if e["protocol"]["steps"] else "")
               for e in entries]
    rows = [(label, [_cell(e, key, fmt) for e in entries]) for key, label, fmt in ROWS
            if any(key in e["scores"] for e in entries)]
    width = max(len(label) for label, _ in rows)
    col = max(12, *(len(h) for h in headers), *(len(c) for _, cells in rows for c in cells))
    lines.append("")
    lines.append(" " * width + "  " + "  ".join(h.rjust(col) for h in headers))
    lines += [label.ljust(width) + "  " + "  ".join(c.rjust(col) for c in cells) for label, cells in rows]
    lines.append("")
    mem, lik = first.get("memorization"), first.get("likelihood")
    if mem:
        lines.append(f"memorised  {mem['rule']}; held-out real items flagged: {100 * mem['memorized_share_real']:.2f}%")
    if lik and "bits_per_dim" in lik:
        lines.append(f"likelihood {lik['bits_per_dim']:.4f} +- {lik['std_error']:.4f} bits/dim on {lik['n']} validation items "
                     f"({'exact' if lik['kind'] == 'exact' else 'an upper bound on the negative log-likelihood'})")
    for header, e in zip(headers, entries):
        tag = f"[{header}] " if len(entries) > 1 else ""
        sp = e.get("speed")
        if sp:
            lines.append(f"speed      {tag}{sp['samples_per_sec']:.1f} samples/s, {sp['latency_per_batch_s']:.3f} s per batch "
                         f"of {sp['batch_size']} on {sp['device']}, {sp['threads']} thread(s), "
                         f"{sp.get('precision', 'fp32')}{', compiled' if sp.get('compiled') else ''}, after "
                         f"{sp['warmup_batches']} warm-up batch ({sp.get('warmup_seconds', 0):.1f} s)")
        t = e["timings"]
        lines.append(f"time       {tag}measures {t['measures_total']:.1f} s, sampling excluded ("
                     + ", ".join(f"{k} {v:.1f}" for k, v in t.items() if k != "measures_total") + ")")
    if "written_to" in first:
        lines.append(f"saved      {first['written_to']} (figures in {Path(first['written_to']).stem}-figures/)")
    return "\n".join(lines)
