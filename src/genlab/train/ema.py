"""Exponential moving average of the modules a model names (all of it by default; a GAN's generator only).

The decay starts low, min(decay, (1 + n) / (10 + n)) after n updates, so the average of a short run is
not dominated by its random initial weights. Buffers (batch-norm statistics) and the parameters of
modules that are not averaged are copied, so the EMA model is always a complete, usable model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float, modules: list[str] | None = None):
        self.decay = decay
        self.num_updates = 0
        referenced = getattr(model, "_referenced", None)
        if referenced:  # other runs' frozen networks are shared, never copied
            model._referenced = {}
        try:
            self.model = copy.deepcopy(model).eval().requires_grad_(False)
        finally:
            if referenced:
                model._referenced = referenced
                self.model._referenced = referenced
        names = modules if modules else [""]
        averaged = {id(p) for name in names for p in model.get_submodule(name).parameters()}
        pairs = list(zip(self.model.parameters(), model.parameters()))
        self._averaged = [(e, p) for e, p in pairs if id(p) in averaged]
        self._copied = [(e, p) for e, p in pairs if id(p) not in averaged]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        if self._averaged:
            torch._foreach_lerp_([e for e, _ in self._averaged], [p.detach() for _, p in self._averaged], 1.0 - d)
        if self._copied:
            torch._foreach_copy_([e for e, _ in self._copied], [p.detach() for _, p in self._copied])
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.num_updates += 1
