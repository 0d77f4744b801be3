"""Random windows over a long stream (tokens, series, audio), drawn so that resumed runs draw the same.

Batch `index` of process `rank` takes its window starts from a CPU generator seeded by a hash of
(seed, index, rank): nothing else, so a resumed run sees the same windows, and the stream of start
positions shares no seed with the trainer's own per-step generators.
"""

from __future__ import annotations

import hashlib

import torch

from ..errors import ArgumentError


def window_generator(seed: int, index: int, rank: int) -> torch.Generator:
    """The CPU generator of batch `index` on process `rank`."""
    digest = hashlib.blake2b(f"genlab windows {seed} {index} {rank}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def random_windows(stream: torch.Tensor, length: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """batch_size windows of `length` steps at uniform random starts: (N,) -> (B, L); (C, N) -> (B, C, L)."""
    positions = stream.shape[-1] - length + 1
    starts = torch.randint(0, positions, (batch_size,), generator=generator)
    windows = stream.unfold(-1, length, 1)[..., starts, :]  # a view over every start, then B of them
    return windows.movedim(-2, 0).contiguous()


def tail_windows(stream: torch.Tensor, length: int) -> torch.Tensor:
    """Consecutive non-overlapping windows from the start of `stream`: (N,) -> (K, L); (C, N) -> (K, C, L)."""
    return stream.unfold(-1, length, length).movedim(-2, 0).contiguous()


def check_length(what: str, available: int, length: int, option: str) -> None:
    """Refuse a window longer than the part of the stream it is drawn from, naming the option to lower."""
    if available < length:
        raise ArgumentError(f"{what} holds {available} steps, fewer than one window of {length}; "
                            f"lower {option} (--set train.data_options.{option}=...) or use longer data")
