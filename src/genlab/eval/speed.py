"""Sampling speed, measured on the sampling that evaluation does anyway.

Samples are drawn in batches exactly as `Run.sample(n, seed=...)` draws them (one generator seeded once,
batch after batch), so the evaluated samples are the ones a user gets. One extra warm-up batch from a
separate generator runs first and is not timed: the first call pays for memory allocation and kernel
selection, which say nothing about steady-state speed. Every batch is synchronised before its clock
stops, so asynchronous GPU work is counted.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch


def timed_sampling(model, n: int, *, batch_size: int = 500, seed: int = 0, conditions=None,
                   options: dict[str, Any] | None = None, warmup: int = 1, progress: bool = False,
                   precision: str = "auto", compile: bool | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """n samples (CPU float32) and the speed of drawing them: samples/s and seconds per batch.

    `precision` and `compile` as in `sample_in_batches`. A compiled model compiles during the warm-up,
    whose time is reported as `warmup_seconds` (the compile cost that the steady-state speed leaves out).
    """
    from ..compilation import compile_model, compiled_for, should_compile
    from ..precision import resolve_precision
    from ..sampling import sample_in_batches

    options = options or {}
    device = model.device
    batch_size = min(batch_size, n)
    resolved = resolve_precision(precision, device, model)
    calls = -(-n // batch_size) * model.network_calls(**options)
    if compiled_for(model) is None and should_compile(compile, model, "sample", device, calls):
        compile_model(model, "sample")
    t0 = time.perf_counter()
    for i in range(warmup):
        first = {k: torch.as_tensor(v)[:batch_size] for k, v in (conditions or {}).items()}
        sample_in_batches(model, batch_size, first, seed=10_007 + i, batch_size=batch_size, options=options,
                          precision=resolved)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    warmup_seconds = time.perf_counter() - t0
    latencies: list[tuple[int, float]] = []
    samples = sample_in_batches(model, n, conditions, seed=seed, batch_size=batch_size, options=options,
                                progress="sampling" if progress else None, timings=latencies, precision=resolved)
    total = sum(t for _, t in latencies)
    full = [t for m, t in latencies if m == batch_size]  # a short last batch would flatter the latency
    speed = {
        "samples_per_sec": n / total if total > 0 else float("inf"),
        "latency_per_batch_s": statistics.median(full or [t for _, t in latencies]),
        "batch_size": batch_size,
        "batches_timed": len(latencies),
        "warmup_batches": warmup,
        "warmup_seconds": round(warmup_seconds, 2),
        "precision": resolved,
        "compiled": compiled_for(model) is not None,
        "sampling_seconds": total,
        "device": str(device) if device.type != "cuda" else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
    }
    return samples, speed
