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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_sampling(model, n: int, *, batch_size: int = 500, seed: int = 0, labels: torch.Tensor | None = None,
                   options: dict[str, Any] | None = None, warmup: int = 1,
                   progress: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
    """n samples (CPU float32) and the speed of drawing them: samples/s and seconds per batch."""
    options = options or {}
    device = next(model.parameters()).device
    batch_size = min(batch_size, n)
    for i in range(warmup):
        lab = None if labels is None else labels[:batch_size].to(device)
        model.sample(batch_size, labels=lab, generator=torch.Generator(device).manual_seed(10_007 + i), **options)
    _sync(device)
    generator = torch.Generator(device).manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="sampling", unit="img")
    out, latencies = [], []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        lab = None if labels is None else labels[start : start + m].to(device)
        t0 = time.perf_counter()
        x = model.sample(m, labels=lab, generator=generator, **options)
        _sync(device)
        latencies.append((m, time.perf_counter() - t0))
        out.append(x.float().cpu())
        if bar:
            bar.update(m)
    if bar:
        bar.close()
    total = sum(t for _, t in latencies)
    full = [t for m, t in latencies if m == batch_size]  # a short last batch would flatter the latency
    speed = {
        "samples_per_sec": n / total if total > 0 else float("inf"),
        "latency_per_batch_s": statistics.median(full or [t for _, t in latencies]),
        "batch_size": batch_size,
        "batches_timed": len(latencies),
        "warmup_batches": warmup,
        "sampling_seconds": total,
        "device": str(device) if device.type != "cuda" else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
    }
    return torch.cat(out), speed
