"""Numeric precision of the network's matrix maths: fp32, or bf16 / fp16 autocast.

Only the network's convolutions, matrix products and attention run in the lower precision (PyTorch's
autocast decides which ops). Everything that accumulates stays float32: master weights, EMA, optimizer
state and checkpoints (the parameters are never cast), and models turn network outputs back to float32
before losses, schedule maths and metrics. So a checkpoint written under bf16 is the same kind of file
as one written under fp32, and either samples under the other.

`auto` picks bf16 where the hardware computes it natively (CUDA GPUs that support it; CPUs with
AVX512-BF16 or AMX) and fp32 elsewhere: on a CPU without native bf16 the conversions make it slower
than fp32. fp16 is for GPUs without bf16; it trains with a gradient scaler because its narrow exponent
range underflows small gradients.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch

from .errors import ArgumentError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_warned: set[tuple[str, str]] = set()


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 in hardware (not by conversion to float32 and back)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check() for check in checks if check is not None)
    return False


def resolve_precision(name: str, device: torch.device, model: torch.nn.Module | None = None) -> str:
    """The precision `name` means on `device`: "fp32", "bf16" or "fp16" (never "auto").

    With a `model`, "auto" first takes the model's own measured choice for the device type
    (`GenerativeModel.auto_precision`: a small transformer runs slower under CPU autocast than in fp32).
    """
    if name not in PRECISIONS:
        raise ArgumentError(f"unknown precision '{name}'; choose from {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if name == "auto":
        chosen = getattr(model, "auto_precision", {}).get(device.type)
        if chosen is not None:
            return resolve_precision(chosen, device)
        return "bf16" if device.type in ("cuda", "cpu") and native_bf16(device) else "fp32"
    if name == "bf16" and not native_bf16(device):
        if device.type == "cuda":
            _say_once(name, device, "this GPU has no bf16: falling back to fp32 (use --precision fp16 for speed)")
            return "fp32"
        _say_once(name, device, f"this {device.type.upper()} has no native bf16: bf16 runs, but slower than fp32 would")
    if name == "fp16" and device.type != "cuda":
        _say_once(name, device, "fp16 is meant for GPUs without bf16; on a CPU it is emulated and slow")
    return name


def _say_once(name: str, device: torch.device, message: str) -> None:
    key = (name, device.type)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (bf16 has float32's exponent range and needs none)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


@contextlib.contextmanager
def sampling_precision(model: torch.nn.Module, precision: str = "auto") -> Iterator[str]:
    """Run a block of sampling under `precision` on the model's device; yields the resolved name."""
    device = next(model.parameters(), torch.empty(0)).device
    resolved = resolve_precision(precision, device, model)
    with autocast(device, resolved):
        yield resolved
