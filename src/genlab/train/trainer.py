"""The one training loop every family shares.

Per step, for each optimizer group the model names (one for most models, discriminator then generator
for GANs): zero that group's gradients, compute its loss under autocast (bf16 on CUDA), backpropagate
(averaged across processes by DDP), clip, step AdamW. Then the EMA is updated.

Reproducibility and exact resume: the data order of epoch e is a permutation seeded by (seed, e), and
every random draw of step s comes from a generator seeded by (seed, s, rank). The state of a run is
therefore its weights, EMA, optimizer moments and step count, all of which a checkpoint holds, so a
resumed run repeats the uninterrupted run's batches and losses.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data import Dataset
from ..errors import ArgumentError, TrainingDiverged
from ..imageio import save_samples
from ..runs import Run, TrainResult
from . import checkpoint as ckpt
from . import distributed
from .ema import EMA

Evaluator = Callable[[nn.Module, int], dict[str, float]]  # (EMA model, step) -> scores; "best_key" picks the best


class _LossModule(nn.Module):
    """Routes `training_loss` through forward so DDP can synchronise gradients."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, labels, group, generator):
        out = self.model.training_loss(x, labels, group, generator)
        return out.loss, out.logs


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


class Trainer:
    def __init__(self, run: Run, model, dataset: Dataset, *, evaluator: Evaluator | None = None,
                 best_key: str | None = None, progress: bool = True):
        self.run = run
        self.cfg = run.train_config
        self.dataset = dataset
        self.device = _device(self.cfg.device)
        self.proc = distributed.setup(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.proc.local_rank)
            torch.cuda.set_device(self.device)
        self.model = model.to(self.device)
        self.ema = EMA(self.model, self.cfg.ema_decay)
        groups = self.model.optimizer_groups()
        self.optimizers = {
            name: torch.optim.AdamW(params, lr=self.cfg.lr, betas=self.cfg.betas, weight_decay=self.cfg.weight_decay)
            for name, params in groups.items()
        }
        self.loss_module = _LossModule(self.model)
        if self.proc.distributed:
            self.loss_module = DistributedDataParallel(
                self.loss_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=len(groups) > 1)
        self.evaluator, self.best_key = evaluator, best_key
        self.best_score = math.inf
        self.progress = progress and self.proc.is_main
        self.step = 0
        self.train_seconds = 0.0
        self._stop_signal: str | None = None
        self.x = dataset.x_train.to(self.device)
        self.y = dataset.y_train.to(self.device) if dataset.y_train is not None else None
        self.global_batch = self.cfg.batch_size * self.proc.world_size
        if len(self.x) < self.global_batch:
            raise ArgumentError(f"the dataset has {len(self.x)} training items, fewer than one batch of "
                                f"{self.global_batch}; lower --batch-size")
        self.steps_per_epoch = len(self.x) // self.global_batch
        self.log = _logger(run.path / "log.txt" if self.proc.is_main else None)
        self._preview_z_seed = self.cfg.seed + 12345

    # ------------------------------------------------------------------ state
    def load_latest(self) -> None:
        step_dir = ckpt.resolve(self.run.checkpoints, "latest")
        meta, model_state, ema_state, state = ckpt.load(step_dir, self.run.model_name)
        ckpt.load_weights(self.model, model_state, step_dir)
        ckpt.load_weights(self.ema.model, ema_state, step_dir)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.step = int(state["step"])
        self.ema.num_updates = int(state["ema_updates"])
        self.train_seconds = float(state["train_seconds"])
        self.best_score = float(state.get("best_score", math.inf))
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(("MT19937", state["numpy_rng"].numpy(), 624, 0, 0.0))
        self.log.info("resumed from %s (step %d)", step_dir, self.step)

    def save(self, pointer: str = "latest") -> Path | None:
        if not self.proc.is_main:
            return None
        state = {
            "step": self.step, "ema_updates": self.ema.num_updates, "train_seconds": self.train_seconds,
            "best_score": self.best_score,
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        }
        path = ckpt.save(self.run.checkpoints, self.step, self.run.model_name, self.model.state_dict(),
                         self.ema.model.state_dict(), state, keep=self.cfg.keep_checkpoints, pointer=pointer)
        if pointer == "best":  # the best is also the newest: keep "latest" current
            ckpt.mark(self.run.checkpoints, path, "latest")
        self.last_checkpoint = path
        return path

    # ------------------------------------------------------------------ data
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        epoch, i = divmod(step, self.steps_per_epoch)
        perm = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.cfg.seed * 7_777 + epoch))
        b = self.cfg.batch_size
        start = i * self.global_batch + self.proc.rank * b
        idx = perm[start : start + b].to(self.device)
        return self.x[idx], (self.y[idx] if self.y is not None else None)

    def lr_at(self, step: int) -> float:
        warm = self.cfg.warmup_steps
        return self.cfg.lr * min(1.0, (step + 1) / warm) if warm else self.cfg.lr

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        self.model.train()
        x, y = self.batch(self.step)
        gen = torch.Generator(self.device).manual_seed(step_seed(self.cfg.seed, self.step, self.proc.rank))
        torch.manual_seed(step_seed(self.cfg.seed, self.step, self.proc.rank))  # dropout and other global draws
        lr = self.lr_at(self.step)
        logs: dict[str, float] = {}
        losses = []
        for name, opt in self.optimizers.items():
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                loss, group_logs = self.loss_module(x, y, name, gen)
            losses.append(loss.detach().float())
            logs.update(group_logs)
            if not torch.isfinite(loss):
                break  # caught below, after the processes agree
            loss.backward()
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], self.cfg.grad_clip)
            opt.step()
        finite = torch.stack([torch.isfinite(v).all() for v in losses]).all().float().reshape(1)
        stats = torch.tensor([logs[k] for k in sorted(logs)] + [finite.item()], dtype=torch.float64)
        stats = distributed.all_reduce_mean(stats.to(self.device), self.proc).cpu()
        if stats[-1].item() < 1.0:
            raise TrainingDiverged(self.step, logs, str(getattr(self, "last_checkpoint", None) or "") or None)
        self.ema.update(self.model)
        self.step += 1
        out = dict(zip(sorted(logs), stats[:-1].tolist()))
        out["lr"] = lr
        return out

    # ------------------------------------------------------------------ the loop
    def fit(self, steps: int | None = None, minutes: float | None = None) -> TrainResult:
        """Train until the run reaches `steps` in total, or for `minutes` more, whichever comes first."""
        if steps is None and minutes is None:
            raise ValueError("give a budget: steps (total) or minutes (more)")
        start_step, start_time = self.step, time.monotonic()
        seconds = minutes * 60 if minutes is not None else math.inf
        bar = self._progress_bar(steps, seconds, start_step)
        self._write_state("running")
        handlers = self._install_signal_handlers()
        status = "finished"
        try:
            last_log_time, last_log_step = time.monotonic(), self.step
            while True:
                elapsed = time.monotonic() - start_time
                stop = (steps is not None and self.step >= steps) or elapsed >= seconds or self._stop_signal is not None
                if self._agree(stop):
                    break
                t0 = time.monotonic()
                logs = self.train_step()
                self.train_seconds += time.monotonic() - t0
                if self.proc.is_main:
                    if self.step % self.cfg.log_every == 0 or self.step == 1:
                        now = time.monotonic()
                        rate = (self.step - last_log_step) * self.global_batch / max(now - last_log_time, 1e-9)
                        last_log_time, last_log_step = now, self.step
                        self._append_metrics({"step": self.step, "time": round(self.train_seconds, 2),
                                              **{k: round(v, 6) for k, v in logs.items()},
                                              "samples_per_sec": round(rate, 1)})
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "lr"} | {"step": self.step}, refresh=False)
                        bar.update(1 if steps is not None else 0)
                        if steps is None:
                            bar.n = min(int(time.monotonic() - start_time), bar.total)
                            bar.refresh()
                    if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                        self.save_preview()
                if self.cfg.eval_every and self.evaluator and self.step % self.cfg.eval_every == 0:
                    self._evaluate()
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self.save()
                distributed.barrier(self.proc)
            if self._stop_signal:
                status = "interrupted"
                self.log.info("%s received: checkpoint at step %d, then exit", self._stop_signal, self.step)
        except TrainingDiverged:
            self._write_state("diverged")
            raise
        finally:
            _restore_signal_handlers(handlers)
            if bar is not None:
                bar.close()
        if self.step > start_step or not self.run.has_checkpoint():
            self.save()
            if self.proc.is_main and self.cfg.sample_every:
                self.save_preview()
        self._write_state(status)
        distributed.barrier(self.proc)
        return TrainResult(self.run, self.step, status, self.train_seconds)

    # ------------------------------------------------------------------ helpers
    def _agree(self, stop: bool) -> bool:
        """All processes stop at the same step: rank 0's clock decides."""
        if not self.proc.distributed:
            return stop
        flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())

    def save_preview(self, n: int = 64) -> Path:
        """A grid from the EMA weights, from the same noise every time, so grids show progress."""
        model = self.ema.model
        model.eval()
        gen = torch.Generator(self.device).manual_seed(self._preview_z_seed)
        labels = None
        if model.conditional:
            labels = torch.arange(n, device=self.device) % self.dataset.num_classes
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            samples = model.sample(n, labels=labels, generator=gen, **preview_options(model))
        path = self.run.samples_dir / f"step-{self.step:08d}.png"
        save_samples(samples.float().cpu(), path, reference=self.dataset.x_val[:1000])
        return path

    def _evaluate(self) -> None:
        scores = self.evaluator(self.ema.model, self.step)
        if self.proc.is_main:
            self._append_metrics({"step": self.step, "eval": scores})
            key = self.best_key
            if key and key in scores and scores[key] < self.best_score:
                self.best_score = scores[key]
                self.save(pointer="best")
                self.log.info("new best %s = %.4g at step %d", key, scores[key], self.step)

    def _append_metrics(self, row: dict) -> None:
        with open(self.run.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _write_state(self, status: str) -> None:
        if not self.proc.is_main:
            return
        state = {"status": status, "step": self.step, "train_seconds": round(self.train_seconds, 2),
                 "world_size": self.proc.world_size, "batch_size_per_process": self.cfg.batch_size,
                 "effective_batch_size": self.global_batch, "device": str(self.device)}
        tmp = self.run.path / "train_state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.run.path / "train_state.json")

    def _progress_bar(self, steps, seconds, start_step):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        if steps is not None:
            return tqdm(total=steps, initial=start_step, desc=f"train {self.run.model_name}", unit="step", dynamic_ncols=True)
        return tqdm(total=int(seconds), desc=f"train {self.run.model_name}", unit="s", dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n}/{total}s {postfix}")

    def _install_signal_handlers(self):
        def request_stop(signum, frame):
            if self._stop_signal is not None:
                raise KeyboardInterrupt  # second Ctrl-C: stop now
            self._stop_signal = signal.Signals(signum).name

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread
                pass
        return previous


def _restore_signal_handlers(previous) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def preview_options(model) -> dict:
    """Cheap sampling settings for in-training grids (DDIM with 50 steps for diffusion)."""
    opts = model.sample_options()
    if opts.get("sampler") == "ddpm":
        return {"sampler": "ddim", "steps": min(50, opts["steps"])}  # a model of fewer timesteps allows fewer
    return opts


def _device(name: str) -> torch.device:
    from ..runs import resolve_device

    return resolve_device(name)


def _logger(path: Path | None) -> logging.Logger:
    log = logging.getLogger(f"genlab.train.{id(path)}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if path is not None and not log.handlers:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    return log
