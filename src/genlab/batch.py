"""The names of the tensors in a batch, fixed once for the whole library.

A batch is a plain `dict[str, torch.Tensor]`. Every data source fills `x` (what the model learns to
generate) and whatever conditions it has; a model declares which conditions it accepts
(`GenerativeModel.accepted_conditions`) and reads only those. Sampling takes the same names:
`model.sample(n, {"label": ...})`.
"""

from __future__ import annotations

import torch

Batch = dict[str, torch.Tensor]

X = "x"                      # the items to generate: images (B, C, H, W), points (B, D), tokens (B, T), series (B, C, T)
LABEL = "label"              # (B,) int64 class index
TEXT = "text"                # (B, L) int64 caption tokens
TEXT_MASK = "text_mask"      # (B, L) bool, True where `text` holds a real token
SOURCE = "source"            # (B, S) int64 source sentence (seq2seq) or (B, C, H, W) source image (img2img)
SOURCE_MASK = "source_mask"  # (B, S) bool, True where `source` holds a real token
MASK = "mask"                # (B, 1, H, W) bool, True where the item is known (inpainting, completion)
LOW_RES = "low_res"          # (B, C, h, w) a low-resolution version of x (super-resolution)
CONTEXT = "context"          # (B, C, T0) the observed past of a series (forecasting)
X_B = "x_b"                  # items of the second domain of unpaired two-domain data (translation)
X_MASK = "x_mask"            # (B, T) bool, True where padded sequence x holds a real token
PROMPT = "prompt"            # (B, P) int64 the first tokens of a sequence to continue (a language model's prompt)

CONDITIONS: dict[str, str] = {
    LABEL: "class label (--class 7)",
    TEXT: "caption tokens (--prompt '...')",
    SOURCE: "source sentence or source image (--input FILE)",
    MASK: "known-region mask (--mask FILE)",
    LOW_RES: "low-resolution image (--input FILE)",
    CONTEXT: "observed past of a series (--input FILE)",
    PROMPT: "the start of a token sequence to continue (--prompt '...')",
}

# Tensors that travel with a condition and are never conditions themselves.
COMPANIONS: dict[str, str] = {TEXT: TEXT_MASK, SOURCE: SOURCE_MASK, X: X_MASK}


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move every tensor of a batch; pinned host memory makes the copy asynchronous."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def batch_size(batch: Batch) -> int:
    return len(batch[X]) if X in batch else len(next(iter(batch.values())))
