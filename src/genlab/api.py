"""The Python API in a handful of functions; the CLI only wraps these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import apply_overrides, from_dict, to_dict
from .data import Dataset, load_dataset
from .errors import GenlabError
from .registry import get_model_class, model_names
from .runs import Run, TrainConfig, TrainResult, resolve_device


def models() -> list[tuple[str, str, str]]:
    """(name, family, one-line description) of every registered model."""
    out = []
    for name in model_names():
        cls = get_model_class(name)
        out.append((name, cls.family, cls.description))
    return out


def data_info(dataset: Dataset) -> dict[str, Any]:
    return {"name": dataset.name, "kind": dataset.kind, "shape": list(dataset.shape),
            "num_classes": dataset.num_classes, "class_names": dataset.class_names,
            "train_size": len(dataset.x_train), "val_size": len(dataset.x_val), "notes": dataset.notes}


def load_run_dataset(run: Run) -> Dataset:
    cfg = run.train_config
    return load_dataset(cfg.data, data_dir=cfg.data_dir, image_size=cfg.image_size, download=cfg.download, seed=cfg.seed)


def train(model: str | None = None, data: str = "digits", *, out: str | Path | None = None,
          steps: int | None = None, minutes: float | None = None, resume: str | Path | None = None,
          overwrite: bool = False, model_config: dict[str, Any] | None = None, overrides: list[str] | None = None,
          progress: bool = True, evaluator=None, best_key: str | None = None, **train_options: Any) -> Run:
    """Train a model (or resume a run) and return the Run.

    Args:
        model: a registered name (`genlab.models()`); omit when resuming.
        data: dataset name (`genlab datasets`) or "imagefolder:PATH".
        out: run directory (default runs/MODEL-DATA). An existing run is refused unless `overwrite`.
        steps: stop when the run has taken this many steps in total.
        minutes: train for this many more minutes.
        resume: an existing run directory to continue from its latest checkpoint.
        model_config: model settings, e.g. {"base_channels": 64}.
        overrides: dotted "key=value" strings; "train.KEY" goes to the trainer, anything else to the model.
        **train_options: TrainConfig fields (batch_size, lr, seed, data_dir, device, ...).
    """
    return train_with_result(model, data, out=out, steps=steps, minutes=minutes, resume=resume, overwrite=overwrite,
                             model_config=model_config, overrides=overrides, progress=progress,
                             evaluator=evaluator, best_key=best_key, **train_options).run


def train_with_result(model: str | None = None, data: str = "digits", *, out=None, steps=None, minutes=None,
                      resume=None, overwrite=False, model_config=None, overrides=None, progress=True,
                      evaluator=None, best_key=None, **train_options) -> TrainResult:
    from .train import distributed
    from .train.trainer import Trainer

    if steps is None and minutes is None:
        raise GenlabError("give a training budget: --steps N (total) or --minutes M")
    model_over, train_over = _split_overrides(overrides or [])
    if resume is not None:
        run = Run(resume)
        if model and model != run.model_name:
            raise GenlabError(f"{resume} is a '{run.model_name}' run; drop the model name or use '{run.model_name}'")
        if model_over:
            raise GenlabError("a resumed run keeps its model config; start a new run to change it")
        if train_over or train_options:
            changes = apply_overrides(to_dict(run.train_config), train_over)
            changes.update(train_options)
            run.train_config = from_dict(TrainConfig, changes, "train")
            Run.write_config(run.path, run.model_name, run.model_config, run.train_config, run.data_info)
        dataset = load_run_dataset(run)
        net = run.build_model()
    else:
        if model is None:
            raise GenlabError(f"name a model to train ({', '.join(model_names())}) or pass --resume RUN")
        model_cls = get_model_class(model)
        mcfg_dict = apply_overrides(to_dict(from_dict(model_cls.config_class, model_config or {}, f"{model} config")), model_over)
        mcfg = from_dict(model_cls.config_class, mcfg_dict, f"{model} config")
        tcfg_dict = apply_overrides(to_dict(TrainConfig(data=data, **train_options)), train_over)
        tcfg = from_dict(TrainConfig, tcfg_dict, "train").resolved(model_cls.train_defaults)
        dataset = load_dataset(tcfg.data, data_dir=tcfg.data_dir, image_size=tcfg.image_size,
                               download=tcfg.download, seed=tcfg.seed)
        with torch.random.fork_rng(devices=[]):  # the initial weights follow --seed, on every process alike
            torch.manual_seed(tcfg.seed)
            net = model_cls(mcfg, dataset.shape, dataset.num_classes)
        out = Path(out) if out else Path("runs") / f"{model}-{dataset.name.replace(':', '-').replace('/', '_')}"
        proc = distributed.setup(resolve_device(tcfg.device).type)
        if proc.is_main:
            Run.create(out, model, net.config, tcfg, data_info(dataset), overwrite=overwrite)
        distributed.barrier(proc)
        run = Run(out)
    trainer = Trainer(run, net, dataset, evaluator=evaluator, best_key=best_key, progress=progress)
    if resume is not None and run.has_checkpoint():
        trainer.load_latest()
    return trainer.fit(steps=steps, minutes=minutes)


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    model_over, train_over = [], []
    for item in overrides:
        key = item.split("=", 1)[0]
        if key.startswith("train."):
            train_over.append(item[len("train."):])
        else:
            model_over.append(item[len("model."):] if key.startswith("model.") else item)
    return model_over, train_over


def load(path: str | Path) -> Run:
    """Open a run directory."""
    return Run(path)


def sample(run: str | Path | Run, n: int = 64, **options: Any) -> torch.Tensor:
    """n samples from a run's latest EMA weights; see `Run.sample` for options."""
    run = run if isinstance(run, Run) else Run(run)
    return run.sample(n, **options)
