"""Held-out likelihood in bits per dimension, for the models that have one.

Each model says what its number is (`likelihood` class attribute): "exact" for autoregressive models and
flows, "bound" for VAEs (the negative ELBO) and diffusion models (the variational bound); a bound is an
upper bound on the true negative log-likelihood, so it is not comparable with an exact figure as equals.
GANs have none. Lower is better. `options` are the model's own likelihood settings, passed through to its
`bits_per_dim` (a VAE's IWAE samples: {"k": 1000}); a model may describe what its figure measures with
these options (`likelihood_details(**options)`: the bound, the data it is on), recorded beside it.
"""

from __future__ import annotations

import inspect
import math

import torch

from ..errors import EvalInputError


@torch.inference_mode()
def held_out_bits_per_dim(model, x: torch.Tensor, labels: torch.Tensor | None = None, *, n: int = 1000,
                          batch_size: int = 250, seed: int = 0, options: dict | None = None) -> dict | None:
    """Mean bits/dim of `model` on the first n held-out items, with its standard error; None if no likelihood."""
    kind = getattr(model, "likelihood", "none")
    options = dict(options or {})
    if kind == "none":
        return None
    if n < 1 or len(x) == 0:
        raise EvalInputError("bits/dim needs at least one held-out item; the validation split is empty")
    params = inspect.signature(model.bits_per_dim).parameters
    unknown = [k for k in options if k not in params or k in ("batch", "generator")]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise EvalInputError(f"{type(model).__name__}'s likelihood takes no option {', '.join(unknown)}")
    x = x[:n]
    labels = labels[: len(x)] if labels is not None else None
    device = model.device
    generator = torch.Generator(device).manual_seed(seed)
    values = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        yb = None if labels is None else labels[start : start + batch_size].to(device)
        try:
            batch = {"x": xb} if yb is None else {"x": xb, "label": yb}
            values.append(model.bits_per_dim(batch, generator=generator, **options).double().cpu())
        except TypeError as e:  # e.g. a VAE on 2-D points: bits/dim is defined for 8-bit images only
            return {"kind": kind, "skipped": str(e)}
    v = torch.cat(values)
    details = model.likelihood_details(**options) if hasattr(model, "likelihood_details") else {}
    return {"bits_per_dim": float(v.mean()), "std_error": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0,
            "kind": kind, "n": len(v), "split": "validation", **({"options": options} if options else {}), **details}
