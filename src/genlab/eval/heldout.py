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

from ..batch import X


def heldout_evaluator(data, batch_size: int = 64) -> Callable[[Any, int], dict[str, Any]]:
    """evaluator(model, step) -> {"val_loss", "perplexity", "bits_per_token", "bits_per_char"} on `data`'s
    validation windows (a DataSource); the model must have a likelihood (`bits_per_dim`)."""
    validation = data.validation()[X]  # (K, T+1), the same windows every time
    chars_per_token = _chars_per_token(data, validation)

    @torch.inference_mode()
    def evaluator(model, step: int) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        try:
            bits = torch.cat([model.bits_per_dim({X: validation[i:i + batch_size].to(model.device)}).double().cpu()
                              for i in range(0, len(validation), batch_size)])
        finally:
            model.train(was_training)
        per_token = float(bits.mean())
        scores = {"val_loss": round(per_token * math.log(2), 6), "perplexity": round(2.0 ** per_token, 4),
                  "bits_per_token": round(per_token, 6)}
        if chars_per_token:
            scores["bits_per_char"] = round(per_token / chars_per_token, 6)
        return scores

    return evaluator


def _chars_per_token(data, windows: torch.Tensor) -> float | None:
    tokenizer = getattr(data, "tokenizer", None)
    if tokenizer is None:
        return None
    predicted = windows[:, 1:]  # the tokens whose likelihood is measured
    chars = sum(len(tokenizer.decode(row.tolist())) for row in predicted)
    return chars / predicted.numel() if chars else None
