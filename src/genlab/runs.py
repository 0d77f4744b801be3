"""A run directory: its config, checkpoints, samples, metrics and log, and what can be done with it.

runs/NAME/
  config.yaml      model, model config, trainer config, data shape/classes (human-readable, editable)
  metrics.jsonl    one JSON line per logged step (losses, lr, throughput) and per evaluation
  log.txt          the training log
  samples/         sample grids written during training
  checkpoints/     see genlab.train.checkpoint
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import from_dict, load_yaml, save_yaml, to_dict
from .errors import CheckpointError, GenlabError, RunExistsError
from .registry import get_model_class
from .train import checkpoint as ckpt


@dataclass
class TrainConfig:
    """Trainer settings. None means "the model's suggested value" (see each model's train_defaults)."""

    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    download: bool = False
    batch_size: int | None = None  # per process; the effective batch is this times the process count
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    grad_clip: float | None = None  # 0 disables clipping
    ema_decay: float | None = None
    seed: int = 0
    log_every: int = 25
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 0  # steps between evaluations during training (0: never)
    eval_samples: int = 1000
    device: str = "auto"

    def resolved(self, model_defaults: dict[str, Any]) -> "TrainConfig":
        base = {"batch_size": 64, "lr": 2e-4, "betas": (0.9, 0.999), "weight_decay": 0.0, "warmup_steps": 100,
                "grad_clip": 1.0, "ema_decay": 0.999}
        base.update(model_defaults)
        filled = {k: (base[k] if getattr(self, k) is None and k in base else getattr(self, k)) for k in to_dict(self)}
        filled["betas"] = tuple(filled["betas"])
        return TrainConfig(**filled)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenlabError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


class Run:
    """A run on disk. `Run(path)` opens an existing one; `Run.create` starts a new one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        cfg_path = self.path / "config.yaml"
        if not cfg_path.exists():
            raise GenlabError(f"{self.path} is not a genlab run (no config.yaml). Train one with `genlab train MODEL --out {self.path}`.")
        raw = load_yaml(cfg_path)
        self.model_name: str = raw["model"]
        model_cls = get_model_class(self.model_name)
        self.model_config = from_dict(model_cls.config_class, raw.get("model_config", {}), "model_config")
        self.train_config: TrainConfig = from_dict(TrainConfig, raw.get("train", {}), "train")
        self.data_info: dict[str, Any] = raw["data_info"]
        self._models: dict[tuple, Any] = {}

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, model_name: str, model_config: Any, train_config: TrainConfig,
               data_info: dict[str, Any], overwrite: bool = False) -> "Run":
        path = Path(path)
        if (path / "config.yaml").exists() or (path.exists() and any(path.iterdir())):
            if not (path / "config.yaml").exists():  # --overwrite deletes runs, never other folders
                raise RunExistsError(f"{path} is not empty and is not a genlab run; choose another --out.")
            if not overwrite:
                raise RunExistsError(
                    f"{path} already holds a run. Continue it with `genlab train --resume {path}`, "
                    "start afresh with --overwrite (deletes it), or choose another --out."
                )
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        cls.write_config(path, model_name, model_config, train_config, data_info)
        return cls(path)

    @staticmethod
    def write_config(path: Path, model_name, model_config, train_config, data_info) -> None:
        save_yaml({"genlab_version": __version__, "model": model_name, "model_config": to_dict(model_config),
                   "train": to_dict(train_config), "data_info": data_info}, Path(path) / "config.yaml")

    # ------------------------------------------------------------------ paths
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    # ------------------------------------------------------------------ models
    def build_model(self):
        cls = get_model_class(self.model_name)
        return cls(self.model_config, tuple(self.data_info["shape"]), int(self.data_info.get("num_classes", 0)))

    def load_model(self, checkpoint: str = "latest", ema: bool = True, device: str | torch.device | None = None):
        """The model with the weights of `checkpoint` ("latest", "best" or "step-..."), in eval mode."""
        device = resolve_device(str(device)) if device is not None else resolve_device("auto")
        key = (checkpoint, ema, str(device))
        if key not in self._models:
            step_dir = ckpt.resolve(self.checkpoints, checkpoint)
            meta, model_state, ema_state, _ = ckpt.load(step_dir, self.model_name)
            model = self.build_model()
            ckpt.load_weights(model, ema_state if ema else model_state, step_dir)
            model.checkpoint_step = meta["step"]
            self._models[key] = model.to(device).eval()
        return self._models[key]

    def has_checkpoint(self) -> bool:
        return ckpt.resolve(self.checkpoints, "latest", must_exist=False) is not None

    # ------------------------------------------------------------------ using it
    def sample(self, n: int, labels: torch.Tensor | list[int] | None = None, seed: int = 0, batch_size: int = 500,
               checkpoint: str = "latest", device: str | None = None, progress: bool = False,
               **options: Any) -> torch.Tensor:
        """n samples (CPU float32, data range) from the EMA weights, in batches, reproducible by `seed`."""
        if n < 1:
            raise GenlabError(f"number of samples must be at least 1, got {n}")
        model = self.load_model(checkpoint, device=device)
        generator = torch.Generator(model.device).manual_seed(seed)
        labels_t = None if labels is None else torch.as_tensor(labels).long().reshape(-1)
        if labels_t is not None and len(labels_t) != n:
            raise GenlabError(f"got {len(labels_t)} labels for {n} samples; give one label per sample")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=f"sampling {self.model_name}", unit="img")
        out = []
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            lab = None if labels_t is None else labels_t[start : start + m].to(model.device)
            out.append(model.sample(m, labels=lab, generator=generator, **options).float().cpu())
            if bar:
                bar.update(m)
        if bar:
            bar.close()
        return torch.cat(out)

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash mid-write
        return rows

    def info(self) -> dict[str, Any]:
        rows = [r for r in self.metrics() if "loss" in r or any(k.endswith("loss") for k in r)]
        latest = ckpt.resolve(self.checkpoints, "latest", must_exist=False)
        meta = json.loads((latest / "meta.json").read_text()) if latest and (latest / "meta.json").exists() else {}
        last = rows[-1] if rows else {}
        state_file = self.path / "train_state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        return {
            "run": str(self.path),
            "model": self.model_name,
            "model_config": to_dict(self.model_config),
            "train": to_dict(self.train_config),
            "data": self.data_info,
            "parameters": sum(p.numel() for p in self.build_model().parameters()),
            "step": meta.get("step", 0),
            "checkpoint": str(latest) if latest else None,
            "train_seconds": state.get("train_seconds", last.get("time", 0.0)),
            "effective_batch_size": state.get("effective_batch_size"),
            "world_size": state.get("world_size"),
            "status": state.get("status"),
            "last_losses": {k: v for k, v in last.items() if k not in ("step", "time", "lr", "samples_per_sec")},
        }

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.model_name!r})"


def model_config_from(model_name: str, overrides: dict[str, Any] | None = None):
    cls = get_model_class(model_name)
    return from_dict(cls.config_class, overrides or {}, f"{model_name} config")


@dataclass
class TrainResult:
    run: Run
    step: int
    status: str  # "finished" | "interrupted"
    train_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
