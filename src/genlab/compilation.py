"""torch.compile for training and sampling: which modules, whether it pays, and where its cache lives.

Compiling costs seconds to minutes once per process (less when the cache below is warm) and saves a
share of every later network call, so it pays only for jobs with enough calls. Each model states, per
device type, after how many calls it pays (`GenerativeModel.compile_pays_after`, measured with
`benchmarks/speed.py`); `--compile` / `--no-compile` override that. Shapes are static (one compilation
per batch shape), so sampling pads its last batch to the full size rather than compile a second graph.

For sampling, the graph is compiled with inductor's freezing: weights become constants that oneDNN
can pre-pack, which is most of the gain on a CPU. A frozen model must not change its weights afterwards,
which is why only models loaded for sampling are frozen, never the trainer's.
"""

from __future__ import annotations

import os
import time
from typing import Iterable

import torch
from torch import nn

from .files import cache_root

_COMPILED = "_genlab_compiled"  # attribute on a compiled model: "train" or "sample"


def use_cache_dir() -> str:
    """Keep inductor's compiled kernels under genlab's cache (they survive reboots, unlike /tmp)."""
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "inductor"))


def compiled_for(model: nn.Module) -> str | None:
    return getattr(model, _COMPILED, None)


def should_compile(choice: bool | None, model, task: str, device: torch.device, calls: int) -> bool:
    """`choice` if given; else $GENLAB_COMPILE (0 or 1) if set; else whether `calls` (network calls for
    sampling, budget minutes for training) reach the model's measured break-even."""
    if choice is not None:
        return choice
    if os.environ.get("GENLAB_COMPILE") in ("0", "1"):
        return os.environ["GENLAB_COMPILE"] == "1"
    after = model.compile_pays_after.get(task, {}).get(torch.device(device).type)
    return after is not None and calls >= after


def _leaf_targets(module: nn.Module) -> Iterable[nn.Module]:
    # torch's own containers cannot be compiled in place (dynamo skips frames inside torch.nn), so
    # descend through them to the first modules of the project's or the user's own code
    if not type(module).__module__.startswith("torch."):
        yield module
        return
    for child in module.children():
        if any(True for _ in child.parameters()):
            yield from _leaf_targets(child)


def compile_model(model, task: str) -> float:
    """Compile `model`'s networks in place for "train" or "sample"; returns the seconds spent setting up.

    Compilation itself is lazy: the first call of each network pays for it, so callers time that call
    too (`sample_in_batches` reports it as its first batch).
    """
    if task not in ("train", "sample"):
        raise ValueError(f"task must be 'train' or 'sample', got {task!r}")
    if compiled_for(model) is not None:
        return 0.0
    use_cache_dir()
    t0 = time.perf_counter()
    options = {"freezing": True} if task == "sample" else None
    if task == "sample" and model.prefers_channels_last:  # as Run.load_model does; for models loaded elsewhere
        model.to(memory_format=torch.channels_last)
    for target in model.compile_targets():
        for module in _leaf_targets(target):
            module.compile(dynamic=False, options=options)
    object.__setattr__(model, _COMPILED, task)
    return time.perf_counter() - t0
