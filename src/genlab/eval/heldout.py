"""Held-out likelihood during training, for data that sample-based measures do not cover (token streams,
series): `genlab train --eval-every N` on `text:` or `shakespeare` logs the validation loss.

The figures are those language-model papers and nanoGPT print: the mean negative log-likelihood per
token in nats over every validation window (`val_loss`), its perplexity, and bits per character, which
compares models across tokenizers (a BPE token spans several characters).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..batch import X, X_MASK


def heldout_evaluator(data, batch_size: int = 64) -> Callable[[Any, int], dict[str, Any]]:
    """evaluator(model, step) -> {"val_loss", "perplexity", "bits_per_token", "bits_per_char"} on `data`'s
    validation windows (a DataSource); the model must have a likelihood (`bits_per_dim`)."""
    validation = data.validation()  # the same windows (and, for pairs, their sources and masks) every time
    count = len(validation[X])
    chars_per_token = _chars_per_token(data, validation[X], validation.get(X_MASK))

    @torch.inference_mode()
    def evaluator(model, step: int) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        try:
            bits = torch.cat([model.bits_per_dim({k: v[i:i + batch_size].to(model.device)
                                                  for k, v in validation.items()}).double().cpu()
                              for i in range(0, count, batch_size)])
        finally:
            model.train(was_training)
        per_token = float(bits.mean())
        scores = {"val_loss": round(per_token * math.log(2), 6), "perplexity": round(2.0 ** per_token, 4),
                  "bits_per_token": round(per_token, 6)}
        if chars_per_token:
            scores["bits_per_char"] = round(per_token / chars_per_token, 6)
        return scores

    return evaluator


def _chars_per_token(data, windows: torch.Tensor, mask: torch.Tensor | None) -> float | None:
    tokenizer = getattr(data, "tokenizer", None)
    if tokenizer is None:
        return None
    predicted = windows[:, 1:]  # the tokens whose likelihood is measured (specials decode to nothing)
    counted = int(mask[:, 1:].sum()) if mask is not None else predicted.numel()  # padding is not measured
    chars = sum(len(tokenizer.decode(row.tolist())) for row in predicted)
    return chars / counted if chars else None


def evaluate_heldout_run(run, *, checkpoint: str = "latest", data_dir: str | None = None, device=None,
                         precision: str = "auto", n: int | None = None, seed: int = 0, write: bool = True,
                         out=None) -> dict[str, Any]:
    """`genlab eval` for a run on token streams or series: held-out likelihood on the run's own validation
    windows (read with its saved tokenizer), and sampling speed on n samples (default 16; a translator
    translates the first 500 held-out sources and counts its exact targets)."""
    import time

    from .. import __version__
    from ..data import load_data
    from ..data.base import LoadOptions
    from ..sampling import sample_in_batches

    cfg = run.train_config
    data = load_data(cfg.data, LoadOptions(data_dir or cfg.data_dir, cfg.image_size, cfg.download, cfg.seed,
                                           options=dict(cfg.data_options), assets=run.assets()))
    model = run.load_model(checkpoint, device=device)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    scores = heldout_evaluator(data)(model, model.checkpoint_step)
    likelihood_seconds = time.perf_counter() - t0
    validation = data.validation()  # every held-out item, read once
    count = len(validation[X])
    conditions = held = None
    if model.required_inputs:  # a translator: time it on held-out sources
        n = n or min(500, count)
        held = {k: v[:n] for k, v in validation.items()}
        conditions = model.evaluation_conditions(n, real=held)
    n = n or 16
    t1 = time.perf_counter()
    samples = sample_in_batches(model, n, conditions, seed=seed, batch_size=min(n, 250), options=model.sample_options(),
                                precision=precision, compile=False)
    seconds = time.perf_counter() - t1
    scores["samples_per_sec"] = round(n / seconds, 3)
    if held is not None:  # a translator: the share of exact targets
        scores["exact_match"] = round(exact_match(samples, held[X]), 4)
    if data.spec.kind == "tokens":
        scores["tokens_per_sec"] = round(n * (samples.shape[1] - 1) / seconds, 1)
    entry = {"time": started, "genlab_version": __version__, "source": str(run.path), "kind": "heldout",
             "run": {"model": run.model_name, "checkpoint": checkpoint, "checkpoint_step": model.checkpoint_step,
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "train_seconds": run.info()["train_seconds"]},
             "protocol": {"data": data.name, "split": "validation", "windows": count,
                          "window": list(data.spec.shape), "likelihood": model.likelihood, "speed_samples": n,
                          "seed": seed},
             "scores": scores,
             "timings": {"likelihood": round(likelihood_seconds, 3), "sampling": round(seconds, 3)}}
    if write:
        from pathlib import Path

        from .evaluate import append_entry

        path = Path(out) if out else run.path / "eval.json"
        append_entry(path, entry)
        entry["written_to"] = str(path)
    return entry


def exact_match(generated: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of rows whose generated tokens equal the target's, position by position (padding included:
    both end in the same padding once their EOS is reached)."""
    length = min(generated.shape[1], targets.shape[1])
    return float((generated[:, :length].cpu() == targets[:, :length].cpu()).all(1).float().mean())


def heldout_summary(entry: dict[str, Any]) -> str:
    s, p = entry["scores"], entry["protocol"]
    lines = [f"source     {entry['source']}  ({entry['run']['model']}, step {entry['run']['checkpoint_step']})",
             f"held out   {p['data']} {p['split']} split, {p['windows']} windows of {p['window']}; "
             f"{p['likelihood']} likelihood", ""]
    labels = [("val_loss", "validation loss (nats/token)", "{:.4f}"), ("perplexity", "perplexity", "{:.3f}"),
              ("bits_per_token", "bits per token", "{:.4f}"), ("bits_per_char", "bits per character", "{:.4f}"),
              ("exact_match", "exact targets (default decoding)", "{:.3f}"),
              ("tokens_per_sec", "tokens/s (sampling)", "{:.0f}"), ("samples_per_sec", "samples/s", "{:.2f}")]
    width = max(len(label) for _, label, _ in labels)
    lines += [f"{label.ljust(width)}  {fmt.format(s[key])}" for key, label, fmt in labels if key in s]
    if "written_to" in entry:
        lines += ["", f"saved      {entry['written_to']}"]
    return "\n".join(lines)
