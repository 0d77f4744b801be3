"""The one training loop every family shares.

A step runs the model's phases in order (`GenerativeModel.phases`). A phase that is active at this step
runs `repeats` times: zero its optimizer's gradients, compute the phase's loss (under the run's precision,
see genlab.precision), backpropagate into that optimizer's parameters only, average them across processes, clip, step.
Then the EMA of the modules the model names is updated. Learning rates follow each optimizer's
schedule, computed on the host from the step number.

No host synchronisation per step: losses and logs stay tensors on the device, summed until they are
read every `log_every` steps; finiteness is tracked on the device too, as the first step at which a loss
was non-finite, so the divergence report still names that exact step. A checkpoint is never written
after a non-finite loss.

Reproducibility and exact resume: batch number i is a function of (seed, i, rank) (the data source's
contract), the count of batches drawn is part of the checkpoint, and every random draw of step s comes
from a generator seeded by (seed, s, rank). A resumed run repeats the uninterrupted run's batches and
losses; a resume that would change the data order (batch size, seed, process count) is refused.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..batch import Batch
from ..data.base import DataSource
from ..compilation import compile_model, compiled_for, should_compile
from ..errors import ArgumentError, CheckpointError, TrainingDiverged
from ..precision import autocast, grad_scaler, resolve_precision
from ..runs import Run, TrainResult
from . import checkpoint as ckpt
from . import distributed
from .ema import EMA
from .monitor import CollapseWatch
from .optim import BuiltOptimizer, Defaults, build

Evaluator = Callable[[nn.Module, int], dict[str, Any]]  # (EMA model, step) -> scores; best_key picks the best
NO_BAD_STEP = 2**62
HEALTH_PATIENCE = 8  # log intervals in a row a model's health warning must last to count as an alarm
MAX_ROLLBACKS = 3  # then the run only warns: a fourth collapse is not fixed by a lower rate


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


class Trainer:
    def __init__(self, run: Run, model, data: DataSource, *, evaluator: Evaluator | None = None,
                 best_key: str | None = None, progress: bool = True):
        self.run = run
        self.cfg = cfg = run.train_config
        self.data = data
        self.device = _device(cfg.device)
        self.proc = distributed.setup(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.proc.local_rank)
            torch.cuda.set_device(self.device)
        self.model = model.to(self.device)
        distributed.broadcast_state(self.model, self.proc)  # (collectives want contiguous tensors: layout after)
        if self.model.prefers_channels_last:  # before the EMA copy: the averaged model samples in it too
            self.model.to(memory_format=torch.channels_last)
        self.global_batch = cfg.batch_size * self.proc.world_size
        if data.train_size() < self.global_batch:
            raise ArgumentError(f"the data has {data.train_size()} training items, fewer than one batch of "
                                f"{self.global_batch}; lower --batch-size")
        self.defaults = Defaults(cfg.lr, tuple(cfg.betas), cfg.weight_decay, cfg.warmup_steps, cfg.grad_clip,
                                 cfg.schedule, cfg.total_steps, cfg.min_lr_ratio)
        self.optimizers: dict[str, BuiltOptimizer] = {s.name: build(s, self.defaults) for s in self.model.optimizers()}
        self.phases = self.model.phases() if self.optimizers else []
        for phase in self.phases:
            if phase.optimizer not in self.optimizers:
                raise ArgumentError(f"{type(model).__name__}: phase '{phase.name}' steps optimizer "
                                    f"'{phase.optimizer}', which it does not define ({sorted(self.optimizers)})")
        # parameters that some optimizer steps; a phase turns off gradients of the others
        self._stepped = {id(p): p for o in self.optimizers.values() for p in o.params}
        self.ema = EMA(self.model, cfg.ema_decay, self.model.ema_modules())
        self.precision = resolve_precision(cfg.precision, self.device, self.model)
        # fp16 only: one scaler per optimizer, since phases step their optimizers separately
        self.scalers = {name: grad_scaler(self.device, self.precision) for name in self.optimizers}
        self.compile_seconds: float | None = None
        self.evaluator, self.best_key = evaluator, best_key
        self.best_score = math.inf
        self.progress = progress and self.proc.is_main
        self.step = 0
        self.batches_drawn = 0
        self.train_seconds = 0.0
        self.overhead_seconds = 0.0  # previews, evaluations and checkpoints: not part of the budget
        self.last_checkpoint: Path | None = None
        self._stop_signal: str | None = None
        self._log_sums: dict[str, torch.Tensor] = {}
        self._log_counts: dict[str, int] = {}
        self._first_bad = torch.full((), NO_BAD_STEP, dtype=torch.long, device=self.device)
        self.log = _logger(run.path / "log.txt" if self.proc.is_main else None)
        self._preview_seed = cfg.seed + 12345
        # a --minutes budget without total_steps: the share of its time spent, for the cosine schedule
        self._time_progress: float | None = None
        # the collapse watch (models that ask for it): same probe on every process, so all agree
        self.watch = CollapseWatch.for_data(data, cfg.seed + 777) if model.watch_collapse and cfg.collapse_every else None
        self.lr_scale = 1.0  # halved by each rollback
        self.rollbacks = 0
        self.last_healthy_step = 0  # the last step at which the watch found the model healthy
        self._health_streak = 0
        self._collapsed = False  # --on-collapse stop was triggered

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "step": self.step, "batches_drawn": self.batches_drawn, "ema_updates": self.ema.num_updates,
            "train_seconds": self.train_seconds, "overhead_seconds": self.overhead_seconds,
            "best_score": self.best_score,
            "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "last_healthy_step": self.last_healthy_step,
            "watch": self.watch.state() if self.watch else {},
            "optimizers": {name: o.optimizer.state_dict() for name, o in self.optimizers.items()},
            "scalers": {name: s.state_dict() for name, s in self.scalers.items() if s.is_enabled()},
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "data_order": self.data_order(),
        }

    def data_order(self) -> dict[str, int]:
        """What fixes the sequence of batches: a resume must keep all of it."""
        return {"batch_size": self.cfg.batch_size, "seed": self.cfg.seed, "processes": self.proc.world_size}

    def load_latest(self) -> None:
        self._load(ckpt.resolve(self.run.checkpoints, "latest"))
        self.log.info("resumed from %s (step %d)", self.last_checkpoint, self.step)

    def _load(self, step_dir: Path, rollback: bool = False) -> None:
        """Restore a checkpoint; a rollback keeps the clock, the lowered rate and the watch's memory."""
        meta, model_state, ema_state, state = ckpt.load(step_dir, self.run.model_name)
        order = state.get("data_order")
        if order is None:
            raise CheckpointError(f"{step_dir} was written by an older genlab that did not record its data order; "
                                  f"it cannot be resumed exactly. Start a new run from its weights: "
                                  f"genlab train {self.run.model_name} --init-from {self.run.path} ...")
        changed = {k: (v, self.data_order()[k]) for k, v in order.items() if self.data_order().get(k) != v}
        if changed:
            what = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
            raise ArgumentError(f"resuming {self.run.path} with {what} would change the order of its batches, so it "
                                "would no longer continue the same run. Resume with the run's own settings, or start "
                                f"a new run from this one's weights with --init-from {self.run.path}.")
        ckpt.load_weights(self.model, model_state, step_dir)
        ckpt.load_weights(self.ema.model, ema_state, step_dir)
        for name, opt in self.optimizers.items():
            opt.optimizer.load_state_dict(state["optimizers"][name])
        for name, scaler_state in state.get("scalers", {}).items():
            if self.scalers[name].is_enabled():  # a run resumed in fp16 that was in fp16 before
                self.scalers[name].load_state_dict(scaler_state)
        self.step = int(state["step"])
        self.batches_drawn = int(state["batches_drawn"])
        self.ema.num_updates = int(state["ema_updates"])
        torch.set_rng_state(state["torch_rng"])
        r = state["numpy_rng"]
        np.random.set_state(("MT19937", r["keys"].numpy().astype(np.uint32), r["pos"], r["has_gauss"], r["gauss"]))
        self.last_checkpoint = step_dir
        if rollback:
            return
        self.train_seconds = float(state["train_seconds"])
        self.overhead_seconds = float(state.get("overhead_seconds", 0.0))
        self.best_score = float(state.get("best_score", math.inf))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.last_healthy_step = int(state.get("last_healthy_step", 0))
        if self.watch:
            self.watch.load_state(state.get("watch", {}))

    def init_from(self, model_state: dict, ema_state: dict, where: Path) -> None:
        """Start from another run's weights (fine-tuning); optimizer and step start afresh."""
        ckpt.load_weights(self.model, model_state, where)
        ckpt.load_weights(self.ema.model, ema_state, where)

    def save(self, pointer: str = "latest") -> Path | None:
        self._raise_if_diverged()  # never write weights that a non-finite loss has touched
        if not self.proc.is_main:
            return None
        path = ckpt.save(self.run.checkpoints, self.step, self.run.model_name, self.model.state_dict(),
                         self.ema.model.state_dict(), self.state(), keep=self.cfg.keep_checkpoints, pointer=pointer,
                         format_version=self.run.format_version)
        if pointer == "best":  # the best is also the newest: keep "latest" current
            ckpt.mark(self.run.checkpoints, path, "latest")
        self.last_checkpoint = path
        return path

    # ------------------------------------------------------------------ one step
    def next_batch(self) -> Batch:
        batch = self.data.train_batch(self.batches_drawn, self.cfg.batch_size, seed=self.cfg.seed,
                                      rank=self.proc.rank, world_size=self.proc.world_size, device=self.device)
        self.batches_drawn += 1
        return batch

    def train_step(self) -> None:
        self.model.train()
        step, seed = self.step, step_seed(self.cfg.seed, self.step, self.proc.rank)
        gen = torch.Generator(self.device).manual_seed(seed)
        torch.manual_seed(seed)  # dropout and other global draws
        batch = self.next_batch()
        multiple = len(self.optimizers) > 1
        for phase in self.phases:
            if not phase.active(step):
                continue
            opt = self.optimizers[phase.optimizer]
            opt.set_lr(step, self.defaults, self._time_progress, self.lr_scale)
            if multiple:
                self._only_grads_for(opt)
            for repeat in range(phase.repeats):
                phase_batch = self.next_batch() if phase.fresh_batch and repeat else batch
                opt.optimizer.zero_grad(set_to_none=True)
                with autocast(self.device, self.precision):
                    out = self.model.training_loss(phase_batch, phase.name, step, gen)
                loss = out.loss.float()
                self._note_finite(loss, step)
                scaler = self.scalers[phase.optimizer]
                scaler.scale(loss).backward()
                distributed.all_reduce_gradients(opt.params, self.proc)
                if opt.grad_clip:
                    scaler.unscale_(opt.optimizer)
                    torch.nn.utils.clip_grad_norm_(opt.params, opt.grad_clip)
                scaler.step(opt.optimizer)  # a plain step unless fp16 (which skips steps with inf gradients)
                scaler.update()
                self._accumulate(out.logs, loss, phase.name)
        if multiple:
            for p in self._stepped.values():
                p.requires_grad_(True)
        self.ema.update(self.model)
        self.step += 1

    def _only_grads_for(self, opt: BuiltOptimizer) -> None:
        mine = {id(p) for p in opt.params}
        for key, p in self._stepped.items():
            p.requires_grad_(key in mine)

    def _note_finite(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss)
        self._first_bad = torch.where(bad & (self._first_bad == NO_BAD_STEP), step, self._first_bad)

    def _accumulate(self, logs: dict[str, torch.Tensor], loss: torch.Tensor, phase: str) -> None:
        items = dict(logs)
        if not any(k.endswith("loss") for k in items):  # every phase's loss reaches the metrics
            items["loss" if len(self.phases) == 1 else f"{phase}_loss"] = loss
        for k, v in items.items():
            v = torch.as_tensor(v, device=self.device).detach().float().reshape(())
            self._log_sums[k] = self._log_sums[k] + v if k in self._log_sums else v.clone()
            self._log_counts[k] = self._log_counts.get(k, 0) + 1

    def read_logs(self) -> dict[str, float]:
        """The means since the last read, averaged over processes: the one host sync of a logging interval."""
        keys = sorted(self._log_sums)
        means = [self._log_sums[k] / self._log_counts[k] for k in keys]
        values = []
        if means:
            values = distributed.all_reduce_mean(torch.stack(means).double(), self.proc).tolist()
        first_bad = self._agreed_first_bad()
        self._log_sums, self._log_counts = {}, {}
        logs = dict(zip(keys, values[: len(keys)]))
        if first_bad != NO_BAD_STEP:
            raise TrainingDiverged(first_bad, {k: round(v, 4) for k, v in logs.items()},
                                   str(self.last_checkpoint) if self.last_checkpoint else None)
        return logs

    def _agreed_first_bad(self) -> int:
        bad = self._first_bad.clone()
        if self.proc.distributed:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MIN)
        return int(bad.item())

    def _raise_if_diverged(self) -> None:
        first_bad = self._agreed_first_bad()
        if first_bad != NO_BAD_STEP:
            raise TrainingDiverged(first_bad, {}, str(self.last_checkpoint) if self.last_checkpoint else None)

    # ------------------------------------------------------------------ the loop
    def fit(self, steps: int | None = None, minutes: float | None = None) -> TrainResult:
        """Train until the run reaches `steps` in total, or for `minutes` more of training, whichever comes first.

        Previews, evaluations and checkpoints are timed apart and do not count against `minutes`.
        """
        if steps is None and minutes is None:
            raise ValueError("give a budget: steps (total) or minutes (more)")
        if not self.optimizers:
            return self._fit_without_gradients()
        compiling = compiled_for(self.model) is None and should_compile(
            self.cfg.compile, self.model, "train", self.device, minutes if steps is None else 0)
        if compiling:
            compile_model(self.model, "train")
        self._announce(compiling)
        start_step, start_time = self.step, time.monotonic()
        overhead_at_start = self.overhead_seconds
        seconds = minutes * 60 if minutes is not None else math.inf
        # a time budget drives the cosine schedule unless it has a length in steps; a resumed run's cosine
        # spans its earlier training and the new minutes
        by_time = steps is None and not self.defaults.total_steps
        trained_before = self.train_seconds
        bar = self._progress_bar(steps, seconds, start_step)
        self._write_state("running")
        handlers = self._install_signal_handlers()
        status = "finished"
        sync_every = self.cfg.log_every if self.proc.distributed else 1
        try:
            last_log_time, last_log_step = time.monotonic(), self.step
            while True:
                if self.step % sync_every == 0 or (steps is not None and self.step >= steps):
                    spent = time.monotonic() - start_time - (self.overhead_seconds - overhead_at_start)
                    progress = (trained_before + spent) / (trained_before + seconds) if by_time else None
                    stop = (steps is not None and self.step >= steps) or spent >= seconds or self._stop_signal is not None
                    stop, self._time_progress = self._agree(stop, progress)
                    if stop:
                        break
                if self._collapsed:
                    status = "collapsed"
                    break
                try:
                    t0 = time.monotonic()
                    self.train_step()
                    if compiling:  # the first step compiles: time it apart (it still counts against --minutes)
                        compiling = False
                        if self.device.type == "cuda":
                            torch.cuda.synchronize(self.device)
                        self.compile_seconds = time.monotonic() - t0
                        self.log.info("compiled in %.1f s (the first step, included in the training time)", self.compile_seconds)
                    if self.step % self.cfg.log_every == 0 or self.step == 1:
                        logs = self.read_logs()  # the only host sync of the interval; raises on divergence
                        now = time.monotonic()
                        self.train_seconds += now - t0
                        if self.proc.is_main:
                            rate = (self.step - last_log_step) * self.global_batch / max(now - last_log_time, 1e-9)
                            last_log_time, last_log_step = now, self.step
                            lrs = {f"lr_{n}" if len(self.optimizers) > 1 else "lr": o.optimizer.param_groups[0]["lr"]
                                   for n, o in self.optimizers.items()}
                            self._append_metrics({"step": self.step, "time": round(self.train_seconds, 2),
                                                  **{k: round(v, 6) for k, v in logs.items()}, **lrs,
                                                  "samples_per_sec": round(rate, 1)})
                            if bar is not None:
                                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
                        self._check_health(logs)
                    else:
                        self.train_seconds += time.monotonic() - t0
                    if bar is not None:
                        if steps is not None:
                            bar.update(1)
                        elif self.step % 10 == 0:
                            bar.n = min(int(time.monotonic() - start_time), bar.total)
                            bar.refresh()
                    self._periodic()
                except TrainingDiverged as e:
                    if self.cfg.on_collapse != "rollback" or self.rollbacks >= MAX_ROLLBACKS:
                        raise
                    self._first_bad.fill_(NO_BAD_STEP)
                    self._log_sums, self._log_counts = {}, {}
                    self._alarm(f"a non-finite loss at step {e.step}", diverged=True)
            if self._stop_signal:
                status = "interrupted"
                self.log.info("%s received: checkpoint at step %d, then exit", self._stop_signal, self.step)
        except TrainingDiverged as e:
            self._write_state("diverged", step=e.step)
            raise
        finally:
            _restore_signal_handlers(handlers)
            if bar is not None:
                bar.close()
        if (self.step > start_step or not self.run.has_checkpoint()) and status != "collapsed":
            if self._log_sums:
                self.read_logs()  # a last check (and record) of the steps since the last log
            if self.cfg.eval_every and self.evaluator and self.step % self.cfg.eval_every:
                self._evaluate()  # the final weights are scored too (and may be the best)
            self.save()
            if self.proc.is_main and self.cfg.sample_every:
                self.save_preview()
        self._write_state(status)
        distributed.barrier(self.proc)
        return TrainResult(self.run, self.step, status, self.train_seconds)

    def _periodic(self) -> None:
        t0 = time.monotonic()
        # the watch comes first: a checkpoint is written only after the model at its step was found healthy
        if self.watch and self.step % self.cfg.collapse_every == 0:
            reading = self.watch.check(self.model, self.step)
            if self.proc.is_main:
                self._append_metrics({"step": self.step, "watch": reading.to_dict()})
            if reading.alarm:
                self.overhead_seconds += time.monotonic() - t0
                self._alarm(reading.alarm)
                return
            self.last_healthy_step = self.step
        if self.proc.is_main and self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
            self.save_preview()
        if self.cfg.eval_every and self.evaluator and self.step % self.cfg.eval_every == 0:
            self._evaluate()
        if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
            self.save()
        distributed.barrier(self.proc)
        self.overhead_seconds += time.monotonic() - t0

    def _check_health(self, logs: dict[str, float]) -> None:
        """The model's own reading of its logs; an alarm when the same problem lasts HEALTH_PATIENCE logs."""
        problem = self.model.health(logs)
        if problem is None:
            self._health_streak = 0
            return
        self._health_streak += 1
        if self._health_streak == 1:
            self.log.warning("step %d: %s", self.step, problem)
        if self._health_streak >= HEALTH_PATIENCE:
            self._health_streak = 0
            self._alarm(f"{problem}, for {HEALTH_PATIENCE * self.cfg.log_every} steps")

    def _alarm(self, why: str, diverged: bool = False) -> None:
        """Collapse or divergence at this step: warn, and roll back or stop as --on-collapse says. After a
        collapse the last checkpoint the watch found healthy is restored; after a non-finite loss the last
        checkpoint, since none is ever written after one."""
        action = self.cfg.on_collapse
        if action == "rollback" and self.rollbacks >= MAX_ROLLBACKS:
            action = "warn"
            why += f" (no rollback: {MAX_ROLLBACKS} already)"
        self.log.warning("step %d: %s", self.step, why)
        row: dict[str, Any] = {"step": self.step, "alarm": why}
        if action == "stop":
            self._collapsed = True
            self.log.warning("stopping (--on-collapse stop); the checkpoints before step %d are kept", self.step)
        elif action == "rollback":
            limit = self.last_healthy_step if self.watch and not diverged else self.step
            good = [d for d in self.run.checkpoints.glob("step-*") if d.is_dir() and int(d.name.split("-")[1]) <= limit]
            self.rollbacks += 1
            self.lr_scale *= 0.5
            if good:
                target = max(good, key=lambda d: int(d.name.split("-")[1]))
                at = self.step
                if self.proc.is_main:
                    ckpt.set_aside_after(self.run.checkpoints, int(target.name.split("-")[1]))
                distributed.barrier(self.proc)
                self._load(target, rollback=True)
                self.log.warning("rolled back from step %d to %s; learning rates now x%g", at, target.name, self.lr_scale)
                row.update(rollback_to=self.step)
            else:
                self.log.warning("no checkpoint from before step %d was healthy: learning rates now x%g, no rollback",
                                 self.step, self.lr_scale)
            row["lr_scale"] = self.lr_scale
        if self.proc.is_main:
            self._append_metrics(row)

    def _fit_without_gradients(self) -> TrainResult:
        """A model with no trainable parameters (a classical baseline) is fitted once, then saved like any run."""
        self._write_state("running")
        t0 = time.monotonic()
        logs = self.model.fit(self.data) or {}
        self.train_seconds += time.monotonic() - t0
        self.step = max(self.step, 1)
        self.ema.update(self.model)
        if self.proc.is_main:
            self._append_metrics({"step": self.step, "time": round(self.train_seconds, 2), **logs})
        self.save()
        if self.proc.is_main and self.cfg.sample_every:
            self.save_preview()
        self._write_state("finished")
        return TrainResult(self.run, self.step, "finished", self.train_seconds)

    # ------------------------------------------------------------------ helpers
    def _agree(self, stop: bool, progress: float | None = None) -> tuple[bool, float | None]:
        """All processes stop at the same step and share one schedule position: rank 0's clock decides."""
        if not self.proc.distributed:
            return stop, progress
        flag = torch.tensor([1.0 if stop else 0.0, -1.0 if progress is None else progress], device=self.device,
                            dtype=torch.float64)
        torch.distributed.broadcast(flag, src=0)
        stop_flag, shared = flag.tolist()
        return bool(stop_flag), None if shared < 0 else shared

    def save_preview(self, n: int = 64) -> Path | None:
        """Samples from the EMA weights, from the same noise every time, so previews show progress."""
        from ..outputs import save_samples, writers

        model = self.ema.model
        if not model.can_sample:  # a model that serves other runs (a guiding classifier) has nothing to show
            return None
        model.eval()
        gen = torch.Generator(self.device).manual_seed(self._preview_seed)
        conditions = model.evaluation_conditions(n, real=self.data.validation(n))
        with autocast(self.device, self.precision):
            samples = model.sample(n, conditions, generator=gen, **model.preview_options())
        path = self.run.samples_dir / f"step-{self.step:08d}{next(iter(writers(model.output_kind)))}"
        reference = self.data.validation(1000).get("x")
        return save_samples((samples.float() if samples.is_floating_point() else samples).cpu(), path, model.output_kind, reference=reference,
                            context=self.run.output_context())

    def _evaluate(self) -> None:
        scores = self.evaluator(self.ema.model, self.step)  # only the main process scores
        key, best = self.best_key, math.inf
        if self.proc.is_main:
            self._append_metrics({"step": self.step, "time": round(self.train_seconds, 2), "eval": scores})
            if key and key in scores and scores[key] < self.best_score:
                best = float(scores[key])
        if self.proc.distributed:  # every process saves the best together (saving has a collective check)
            shared = torch.tensor([best], dtype=torch.float64, device=self.device)
            torch.distributed.broadcast(shared, src=0)
            best = float(shared.item())
        if best < math.inf:
            self.best_score = best
            self.save(pointer="best")
            self.log.info("new best %s = %.4g at step %d", key, best, self.step)

    def _append_metrics(self, row: dict) -> None:
        with open(self.run.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _write_state(self, status: str, step: int | None = None) -> None:
        if not self.proc.is_main:
            return
        state = {"status": status, "step": self.step if step is None else step, "train_seconds": round(self.train_seconds, 2),
                 "overhead_seconds": round(self.overhead_seconds, 2),
                 "world_size": self.proc.world_size, "batch_size_per_process": self.cfg.batch_size,
                 "effective_batch_size": self.global_batch, "device": str(self.device),
                 "precision": self.precision, "compiled": compiled_for(self.model) is not None}
        if self.compile_seconds is not None:
            state["compile_seconds"] = round(self.compile_seconds, 1)
        tmp = self.run.path / "train_state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.run.path / "train_state.json")

    def _announce(self, compiling: bool) -> None:
        """Say once how this session computes: device, precision and compilation."""
        how = f"{self.device}, precision {self.precision}"
        if self.cfg.precision == "auto":
            if self.device.type in getattr(self.model, "auto_precision", {}):
                how += f" (auto: {type(self.model).__name__}'s measured choice on {self.device.type})"
            else:
                how += " (auto: " + ("native bf16 here)" if self.precision == "bf16" else "no native bf16 here)")
        how += ", compiled" if compiling or compiled_for(self.model) else ""
        self.log.info("training on %s", how)
        if self.progress:
            print(f"training on {how}", file=sys.stderr, flush=True)

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


def _device(name: str) -> torch.device:
    from ..runs import resolve_device

    return resolve_device(name)


def _logger(path: Path | None) -> logging.Logger:
    """The run's log. Keyed by the file itself (not by object id, which Python reuses), and re-pointed
    when a handler left by an earlier trainer writes somewhere else or to a file since deleted."""
    target = str(Path(path).resolve()) if path is not None else None
    log = logging.getLogger(f"genlab.train.{target}" if target else "genlab.train.silent")
    log.setLevel(logging.INFO)
    log.propagate = False
    if target is not None:
        current = [h for h in log.handlers if isinstance(h, logging.FileHandler)]
        if not (current and current[0].baseFilename == target and Path(target).exists()):
            for h in current:
                log.removeHandler(h)
                h.close()
            handler = logging.FileHandler(target)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(handler)
    return log
