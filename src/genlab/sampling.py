"""The one loop that draws n samples from a model in batches: runs, evaluation, speed and the demo use it.

One generator seeded once, batch after batch, so `Run.sample(n, seed=s)` and an evaluation with seed s
see the same samples. Conditions are sliced along with the batches. With `timings`, each batch is
synchronised before its clock stops, so asynchronous GPU work is counted.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .batch import Batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sample_in_batches(model, n: int, conditions: Batch | None = None, *, seed: int = 0, batch_size: int = 500,
                      options: dict[str, Any] | None = None, progress: str | None = None,
                      timings: list[tuple[int, float]] | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """n samples (CPU; float32, or integer ids for tokens); `conditions` hold n entries each; `timings` collects (batch size, seconds)."""
    options = options or {}
    conditions = conditions or {}
    device = model.device
    generator = generator or torch.Generator(device).manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=progress, unit="sample")
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        cond = {k: torch.as_tensor(v)[start : start + m].to(device) for k, v in conditions.items()}
        t0 = time.perf_counter()
        x = model.sample(m, cond or None, generator=generator, **options)
        if timings is not None:
            _sync(device)
            timings.append((m, time.perf_counter() - t0))
        out.append((x.float() if x.is_floating_point() else x).cpu())  # token ids stay integers
        if bar:
            bar.update(m)
    if bar:
        bar.close()
    return torch.cat(out)
