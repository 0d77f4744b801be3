"""The one loop that draws n samples from a model in batches: runs, evaluation, speed and the demo use it.

One generator seeded once, batch after batch, so `Run.sample(n, seed=s)` and an evaluation with seed s
see the same samples. Conditions are sliced along with the batches. A batch that runs out of device
memory is halved until it fits (and said so), so the default batch of 500 is an upper bound. With `timings`, each batch is
synchronised before its clock stops, so asynchronous GPU work is counted.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from .batch import Batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rows(values: torch.Tensor, start: int, m: int, drawn: int) -> torch.Tensor:
    """Rows start..start+m of a condition, the last one repeated up to `drawn` (a padded batch)."""
    part = values[start : start + m]
    if drawn > m and len(part):
        part = torch.cat([part, part[-1:].expand(drawn - m, *part.shape[1:])])
    return part


def sample_in_batches(model, n: int, conditions: Batch | None = None, *, seed: int = 0, batch_size: int = 500,
                      options: dict[str, Any] | None = None, progress: str | None = None,
                      timings: list[tuple[int, float]] | None = None,
                      generator: torch.Generator | None = None, precision: str = "auto",
                      compile: bool | None = False, report: dict[str, Any] | None = None) -> torch.Tensor:
    """n samples (CPU; float32, or integer ids for tokens); `conditions` hold n entries each.

    Args:
        precision: "auto", "fp32", "bf16" or "fp16" for the network's maths (see genlab.precision).
        compile: compile the model's networks first; None: if the job is long enough to pay (see
            genlab.compilation). A compiled model keeps one batch shape: a short last batch is padded.
        timings: collects (batch size, seconds) per batch.
        report: filled with the precision used, whether the model is compiled, and compile seconds.
    """
    from .compilation import compile_model, compiled_for, should_compile
    from .precision import autocast, resolve_precision

    options = options or {}
    conditions = conditions or {}
    device = model.device
    batch_size = max(1, min(batch_size, n))
    resolved = resolve_precision(precision, device, model)
    batches = -(-n // batch_size)
    compile_seconds = None
    if compiled_for(model) is None and should_compile(compile, model, "sample", device,
                                                      batches * model.network_calls(**options)):
        compile_seconds = compile_model(model, "sample")
    static = compiled_for(model) is not None
    generator = generator or torch.Generator(device).manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=progress, unit="sample")
    out = []
    start = 0
    while start < n:
        m = min(batch_size, n - start)
        drawn = batch_size if static else m  # one shape for a compiled graph: pad, then drop the padding
        cond = {k: _rows(torch.as_tensor(v), start, m, drawn).to(device) for k, v in conditions.items()}
        t0 = time.perf_counter()
        try:
            with autocast(device, resolved):
                x = model.sample(drawn, cond or None, generator=generator, **options)[:m]
        except torch.OutOfMemoryError:
            if drawn == 1:
                raise
            # the largest batch that fits: halve and retry (the samples then differ from an unhalved run's)
            batch_size = max(1, drawn // 2)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            warnings.warn(f"out of memory at a batch of {drawn}: sampling in batches of {batch_size}", stacklevel=2)
            continue
        if timings is not None or compile_seconds is not None:
            _sync(device)
            elapsed = time.perf_counter() - t0
            if timings is not None:
                timings.append((m, elapsed))
            if compile_seconds is not None and start == 0:
                compile_seconds += elapsed  # the first call compiles: its time is the compile cost (and one batch)
        out.append((x.float() if x.is_floating_point() else x).cpu())  # token ids stay integers
        start += m
        if bar:
            bar.update(m)
    if bar:
        bar.close()
    if report is not None:
        report.update({"precision": resolved, "compiled": static})
        if compile_seconds is not None:
            report["compile_seconds"] = round(compile_seconds, 2)
    return torch.cat(out)
