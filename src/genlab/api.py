"""The Python API in a handful of functions; the CLI only wraps these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import apply_overrides, from_dict, to_dict
from .data.base import DataSource, LoadOptions, load_data
from .errors import ArgumentError, GenlabError
from .registry import get_model_class, model_names
from .runs import Run, TrainConfig, TrainResult, data_info, load_reference, reference_record, resolve_device


def models() -> list[tuple[str, str, str]]:
    """(name, family, one-line description) of every registered model."""
    out = []
    for name in model_names():
        cls = get_model_class(name)
        out.append((name, cls.family, cls.description))
    return out


def load_run_data(run: Run) -> DataSource:
    """The data a run trains on, read with the run's own saved assets (tokenizer, statistics)."""
    return load_data(run.train_config.data, data_options(run.train_config, run.assets()))


def data_options(cfg: TrainConfig, assets: dict[str, bytes] | None = None) -> LoadOptions:
    return LoadOptions(cfg.data_dir, cfg.image_size, cfg.download, cfg.seed, options=dict(cfg.data_options or {}),
                       assets=assets, exclude_classes=tuple(cfg.exclude_classes or ()))


def train(model: str | None = None, data: str = "digits", *, out: str | Path | None = None,
          steps: int | None = None, minutes: float | None = None, resume: str | Path | None = None,
          overwrite: bool = False, model_config: dict[str, Any] | None = None, overrides: list[str] | None = None,
          condition: str | list[str] | None = None, init_from: str | Path | None = None,
          progress: bool = True, evaluator=None, best_key: str | None = None, **train_options: Any) -> Run:
    """Train a model (or resume a run) and return the Run.

    Args:
        model: a registered name (`genlab.models()`); omit when resuming.
        data: dataset name or scheme (`genlab datasets`), e.g. "mnist", "imagefolder:PATH", "text:PATH".
        out: run directory (default runs/MODEL-DATA). An existing run is refused unless `overwrite`.
        steps: stop when the run has taken this many steps in total.
        minutes: train for this many more minutes (previews and evaluations not counted).
        resume: an existing run directory to continue from its latest checkpoint.
        model_config: model settings, e.g. {"base_channels": 64}; a setting naming another run
            (e.g. {"autoencoder": "runs/vae-mnist"}) makes this run use that one, frozen.
        overrides: dotted "key=value" strings; "train.KEY" goes to the trainer, anything else to the model.
        condition: condition(s) to train with, e.g. "label" (the model must accept them).
        init_from: start from another run's weights (same model and config), e.g. to fine-tune on new data.
        **train_options: TrainConfig fields (batch_size, lr, seed, data_dir, device, ...).
    """
    return train_with_result(model, data, out=out, steps=steps, minutes=minutes, resume=resume, overwrite=overwrite,
                             model_config=model_config, overrides=overrides, condition=condition, init_from=init_from,
                             progress=progress, evaluator=evaluator, best_key=best_key, **train_options).run


def train_with_result(model: str | None = None, data: str = "digits", *, out=None, steps=None, minutes=None,
                      resume=None, overwrite=False, model_config=None, overrides=None, condition=None,
                      init_from=None, progress=True, evaluator=None, best_key=None, **train_options) -> TrainResult:
    from .train import distributed
    from .train.trainer import Trainer

    if steps is None and minutes is None:
        raise GenlabError("give a training budget: --steps N (total) or --minutes M")
    if steps is not None and steps < 0 or minutes is not None and minutes < 0:
        raise ArgumentError("--steps and --minutes cannot be negative")
    model_over, train_over = _split_overrides(overrides or [])
    conditions = tuple([condition] if isinstance(condition, str) else (condition or ()))
    if resume is not None:
        run = Run(resume)
        if model and model != run.model_name:
            raise GenlabError(f"{resume} is a '{run.model_name}' run; drop the model name or use '{run.model_name}'")
        if model_over or conditions or init_from:
            raise GenlabError("a resumed run keeps its model config and conditions; start a new run to change them "
                              f"(e.g. --init-from {resume})")
        lock = _lock(run.path)
        try:
            if train_over or train_options:
                changes = apply_overrides(to_dict(run.train_config), train_over)
                changes.update(train_options)
                run.train_config = from_dict(TrainConfig, changes, "train").validated()
                run.save_config()
            data_source = load_run_data(run)
            net = run.build_model()
        except BaseException:
            lock.release()
            raise
    else:
        if model is None:
            raise GenlabError(f"name a model to train ({', '.join(model_names())}) or pass --resume RUN")
        model_cls = get_model_class(model)
        mcfg_dict = apply_overrides(to_dict(from_dict(model_cls.config_class, model_config or {}, f"{model} config")), model_over)
        mcfg = from_dict(model_cls.config_class, mcfg_dict, f"{model} config")
        tcfg_dict = apply_overrides(to_dict(TrainConfig(data=data, **train_options)), train_over)
        tcfg = from_dict(TrainConfig, tcfg_dict, "train").resolved(model_cls.train_defaults)
        if tcfg.total_steps is None and steps is not None:
            tcfg.total_steps = steps  # the cosine schedule ends with the budget
        data_source = load_data(tcfg.data, data_options(tcfg))
        _check_inputs(model_cls, data_source)
        references = {name: reference_record(getattr(mcfg, name)) for name in model_cls.references if getattr(mcfg, name)}
        for name, ref in references.items():  # saved as the absolute path, so the run opens from any directory
            setattr(mcfg, name, ref["path"])
        with torch.random.fork_rng(devices=[]):  # the initial weights follow --seed, on every process alike
            torch.manual_seed(tcfg.seed)
            net = model_cls(mcfg, data_source.spec, conditions)
        init_record = reference_record(init_from) if init_from else None
        out = Path(out) if out else Path("runs") / f"{model}-{data_source.name.replace(':', '-').replace('/', '_')}"
        proc = distributed.setup(resolve_device(tcfg.device).type)
        if proc.is_main:
            Run.create(out, model, net.config, tcfg, data_info(data_source), overwrite=overwrite,
                       conditions=net.conditions, references=references, assets=data_source.assets(),
                       init_from=init_record)
        distributed.barrier(proc)
        run = Run(out)
        for name, ref in run.references.items():
            net.attach_reference(name, load_reference(ref, run.path))
        lock = _lock(run.path)
    try:
        if evaluator is None and run.train_config.eval_every:  # a model that is scored during training by default
            from .eval.training import make_training_evaluator

            evaluator, best_key = make_training_evaluator(run.train_config)
        trainer = Trainer(run, net, data_source, evaluator=evaluator, best_key=best_key, progress=progress)
        if resume is not None and run.has_checkpoint():
            trainer.load_latest()
        elif init_from is not None:
            _init_from(trainer, run, Path(init_from))
        return trainer.fit(steps=steps, minutes=minutes)
    finally:
        lock.release()


class _NoLock:
    def release(self) -> None:
        pass


def _lock(path: Path):
    """The run's lock, held by the main process only (the other ranks of a torchrun write nothing)."""
    import os

    from .lock import RunLock

    if int(os.environ.get("RANK", "0")) != 0:
        return _NoLock()
    lock = RunLock(path)
    lock.acquire()
    return lock


def _check_inputs(model_cls, data: DataSource) -> None:
    have = set(data.spec.conditions) | set(data.spec.extras.get("inputs", ()))
    missing = [k for k in model_cls.required_inputs if k not in have]
    if missing:
        raise ArgumentError(f"{model_cls.__name__} needs data with {', '.join(missing)}; {data.name} has "
                            f"{', '.join(sorted(have)) or 'no such inputs'} (see `genlab datasets`)")


def _init_from(trainer, run: Run, source: Path) -> None:
    other = Run(source)
    if other.model_name != run.model_name:
        raise GenlabError(f"--init-from {source} is a '{other.model_name}' run; a '{run.model_name}' run can only "
                          f"start from a '{run.model_name}' run")
    step_dir, _, model_state, ema_state = other.load_weights(run.init_from["checkpoint"] if run.init_from else "latest")
    trainer.init_from(model_state, ema_state, step_dir)


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    model_over, train_over = [], []
    for item in overrides:
        key = item.split("=", 1)[0]
        if key.startswith("train."):
            train_over.append(item[len("train."):])
        else:
            model_over.append(item[len("model."):] if key.startswith("model.") else item)
    return model_over, train_over


def distill(teacher: str | Path, *, student_steps: int = 2, teacher_steps: int = 16, round_steps: int | None = None,
            adversarial_weight: float = 0.0,
            out: str | Path | None = None, steps: int | None = None, minutes: float | None = None,
            overwrite: bool = False, progress: bool = True, **train_options: Any) -> Run:
    """Distil a trained diffusion run into a `student_steps`-step DDIM student (progressive distillation);
    the student is a run that references the teacher, trained on the teacher's data (unconditional teachers).

    Args:
        teacher: the DDPM run to distil.
        teacher_steps: DDIM steps of the first round's teacher; each round halves them down to student_steps.
        round_steps: training steps per round (default: the model's).
        adversarial_weight: > 0 adds a discriminator's term on the last round's samples (adversarial diffusion
            distillation); 0, the default, is distillation alone.
        **train_options: TrainConfig fields (batch_size, lr, seed, device, ...).
    """
    source = Run(teacher)
    tc = source.train_config
    config = {"teacher": str(source.path), "student_steps": student_steps, "teacher_steps": teacher_steps}
    if round_steps is not None:
        config["round_steps"] = round_steps
    if adversarial_weight:
        config["adversarial_weight"] = adversarial_weight
    out = out or Path("runs") / f"{source.path.name}-distilled-{student_steps}step"
    data = {"data_dir": tc.data_dir, "image_size": tc.image_size, "download": tc.download,
            "data_options": tc.data_options, "exclude_classes": tc.exclude_classes}
    return train("progressive-distillation", tc.data, out=out, steps=steps, minutes=minutes, overwrite=overwrite,
                 model_config=config, progress=progress,
                 **{**{k: v for k, v in data.items() if v is not None}, **train_options})


def load(path: str | Path) -> Run:
    """Open a run directory."""
    return Run(path)


def sample(run: str | Path | Run, n: int = 64, **options: Any) -> torch.Tensor:
    """n samples from a run's latest EMA weights; see `Run.sample` for options."""
    run = run if isinstance(run, Run) else Run(run)
    return run.sample(n, **options)
