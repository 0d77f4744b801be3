"""Data-parallel training across processes started by torchrun (gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_type: str) -> ProcessInfo:
    """Join the process group if torchrun started us (it sets WORLD_SIZE/RANK); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    info = ProcessInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device_type == "cpu":
        # share the machine's cores between the processes instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    return info


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: torch.Tensor, proc: ProcessInfo) -> torch.Tensor:
    if proc.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= proc.world_size
    return values


def barrier(proc: ProcessInfo) -> None:
    if proc.distributed:
        dist.barrier()


def all_reduce_gradients(params: list[torch.nn.Parameter], proc: ProcessInfo) -> None:
    """Average the gradients of `params` across processes, as one flat buffer (one collective call).

    Done by hand rather than by DDP so that each phase synchronises only the networks it steps: a GAN's
    discriminator phase never waits for, or computes, the generator's gradients.
    """
    if not proc.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= proc.world_size
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def broadcast_state(module: torch.nn.Module, proc: ProcessInfo) -> None:
    """Every process starts from rank 0's parameters and buffers."""
    if not proc.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)
