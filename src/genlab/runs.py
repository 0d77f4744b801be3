"""A run directory: its config, checkpoints, samples, metrics and log, and what can be done with it.

runs/NAME/
  config.yaml      format version, model, model config, conditions, trainer config, data spec, references
                   to other runs (path, checkpoint, SHA-256), assets (name -> SHA-256); human-readable
  assets/          files the data needs to be read again the same way (tokenizer, normalisation)
  metrics.jsonl    one JSON line per logged step (losses, lr, throughput) and per evaluation
  log.txt          the training log
  samples/         previews written during training
  checkpoints/     see genlab.train.checkpoint
  .lock            present while a process writes the run (see genlab.lock)

Runs from before format 2 (genlab 0.1's first layout) are migrated on load: `class_conditional: true`
becomes the condition `label`, and their weights are renamed by each model's `migrate_state_dict`. They
can be sampled and evaluated; to train further, start a new run from them with --init-from.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from . import __version__
from .batch import LABEL, Batch
from .config import from_dict, load_yaml, save_yaml, to_dict
from .data.base import DataSource, DataSpec
from .errors import ArgumentError, CheckpointError, GenlabError, RunExistsError
from .files import file_digest
from .precision import PRECISIONS
from .registry import get_model_class
from .train import checkpoint as ckpt

FORMAT_VERSION = 2


@dataclass
class TrainConfig:
    """Trainer settings. None means "the model's suggested value" (see each model's train_defaults)."""

    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    download: bool = False
    data_options: dict = field(default_factory=dict)  # scheme options, e.g. block_size, tokenizer
    # classes dropped from the training split, never from validation (`--exclude-class 3`: a run that has
    # not seen them, for anomaly detection); recorded here so resuming and `genlab anomaly` know
    exclude_classes: list[int] = field(default_factory=list)
    batch_size: int | None = None  # per process; the effective batch is this times the process count
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    schedule: Literal["constant", "warmup", "cosine"] | None = None  # warmup: linear warm-up, then constant
    total_steps: int | None = None  # the cosine schedule's length (default: the --steps budget)
    min_lr_ratio: float = 0.1  # the cosine schedule ends at this share of the lr
    grad_clip: float | None = None  # 0 disables clipping
    ema_decay: float | None = None
    seed: int = 0
    log_every: int = 25
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int | None = None  # steps between evaluations during training (0: never; GANs: 1000)
    # steps between collapse checks of models that ask for them (GANs; genlab.train.monitor); 0: never
    collapse_every: int | None = None
    # on collapse or divergence: warn and go on, roll back to the last healthy checkpoint at half the
    # learning rate, or stop
    on_collapse: Literal["warn", "rollback", "stop"] = "warn"
    eval_samples: int = 1000
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 where the hardware computes it natively, else fp32 (genlab.precision)
    compile: bool | None = None  # torch.compile the networks; None: where the model measured that it pays

    def resolved(self, model_defaults: dict[str, Any]) -> "TrainConfig":
        base = {"batch_size": 64, "lr": 2e-4, "betas": (0.9, 0.999), "weight_decay": 0.0, "warmup_steps": 100,
                "grad_clip": 1.0, "ema_decay": 0.999, "schedule": "warmup", "eval_every": 0, "collapse_every": 0}
        base.update(model_defaults)
        filled = {k: (base[k] if getattr(self, k) is None and k in base else getattr(self, k)) for k in to_dict(self)}
        filled["betas"] = tuple(filled["betas"])
        return TrainConfig(**filled).validated()

    def validated(self) -> "TrainConfig":
        """Raise ArgumentError for settings that cannot work, naming the setting and what it accepts."""
        positive = {"batch_size": "--batch-size", "log_every": "train.log_every", "eval_samples": "train.eval_samples"}
        for key, flag in positive.items():
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ArgumentError(f"{flag} must be at least 1, got {value}")
        at_least_zero = {"sample_every": "--sample-every", "checkpoint_every": "--checkpoint-every",
                         "eval_every": "--eval-every", "collapse_every": "train.collapse_every", "warmup_steps": "train.warmup_steps",
                         "keep_checkpoints": "train.keep_checkpoints", "grad_clip": "train.grad_clip",
                         "weight_decay": "train.weight_decay"}
        for key, flag in at_least_zero.items():
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ArgumentError(f"{flag} cannot be negative, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise ArgumentError(f"--lr must be positive, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ArgumentError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ArgumentError(f"train.ema_decay must lie in [0, 1), got {self.ema_decay}")
        return self


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenlabError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ArgumentError(f"--device '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None


def data_info(data: DataSource) -> dict[str, Any]:
    """What a run records of its data: the spec (enough to rebuild the model) and where it came from."""
    return {"name": data.name, **data.spec.to_dict(), "train_size": data.train_size(),
            "val_size": len(next(iter(data.validation().values()))), "notes": list(data.notes)}


class Run:
    """A run on disk. `Run(path)` opens an existing one; `Run.create` starts a new one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        cfg_path = self.path / "config.yaml"
        if not cfg_path.exists():
            raise GenlabError(f"{self.path} is not a genlab run (no config.yaml). Train one with `genlab train MODEL --out {self.path}`.")
        try:
            raw = load_yaml(cfg_path)
            if not isinstance(raw, dict) or "model" not in raw or "data_info" not in raw:
                raise ValueError("it lacks the 'model' or 'data_info' section")
        except (yaml.YAMLError, ValueError, UnicodeDecodeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise GenlabError(f"{cfg_path} is damaged and cannot be read ({first}). Restore it from a backup or "
                              "fix it by hand (it is plain YAML); the checkpoints themselves are untouched.") from None
        self.format_version = int(raw.get("format_version", 1))
        if self.format_version > FORMAT_VERSION:
            raise GenlabError(f"{self.path} was written by a newer genlab (run format {self.format_version}, this "
                              f"genlab reads up to {FORMAT_VERSION}); upgrade genlab to use it.")
        if self.format_version < FORMAT_VERSION:
            raw = _migrate(raw)
        self.model_name: str = raw["model"]
        model_cls = get_model_class(self.model_name)
        self.model_config = from_dict(model_cls.config_class, model_cls.migrate_config(dict(raw.get("model_config") or {})),
                                      "model_config")
        self.train_config: TrainConfig = from_dict(TrainConfig, raw.get("train") or {}, "train")
        self.data_info: dict[str, Any] = raw["data_info"]
        self.spec = DataSpec.from_dict(self.data_info)
        self.conditions: tuple[str, ...] = tuple(raw.get("conditions") or ())
        self.references: dict[str, dict[str, str]] = raw.get("references") or {}
        self.asset_digests: dict[str, str] = raw.get("assets") or {}
        self.init_from: dict[str, str] | None = raw.get("init_from")
        self._models: dict[tuple, Any] = {}

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, model_name: str, model_config: Any, train_config: TrainConfig,
               data_info: dict[str, Any], overwrite: bool = False, conditions: tuple[str, ...] = (),
               references: dict[str, dict[str, str]] | None = None, assets: dict[str, bytes] | None = None,
               init_from: dict[str, str] | None = None) -> "Run":
        path = Path(path)
        if (path / "config.yaml").exists() or (path.exists() and any(path.iterdir())):
            if not (path / "config.yaml").exists():  # --overwrite deletes runs, never other folders
                raise RunExistsError(f"{path} is not empty and is not a genlab run; choose another --out.")
            if not overwrite:
                raise RunExistsError(
                    f"{path} already holds a run. Continue it with `genlab train --resume {path}`, "
                    "start afresh with --overwrite (deletes it), or choose another --out."
                )
            from .lock import RunLock

            with RunLock(path):  # refuses while another process trains it
                pass
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        digests = {}
        if assets:
            (path / "assets").mkdir(exist_ok=True)
            for name, content in assets.items():
                (path / "assets" / name).write_bytes(content)
                digests[name] = file_digest(path / "assets" / name)
        save_yaml({"format_version": FORMAT_VERSION, "genlab_version": __version__, "model": model_name,
                   "model_config": to_dict(model_config), "conditions": list(conditions),
                   "train": to_dict(train_config), "data_info": data_info, "references": references or {},
                   "assets": digests, "init_from": init_from}, path / "config.yaml")
        return cls(path)

    def save_config(self) -> None:
        """Rewrite config.yaml after a change of trainer settings (a resume with new options)."""
        raw = load_yaml(self.path / "config.yaml")
        raw["train"] = to_dict(self.train_config)
        save_yaml(raw, self.path / "config.yaml")

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

    # ------------------------------------------------------------------ what the run keeps
    def assets(self) -> dict[str, bytes]:
        """The saved data assets, checked against the digests recorded at creation."""
        out = {}
        for name, digest in self.asset_digests.items():
            path = self.path / "assets" / name
            if not path.exists() or file_digest(path) != digest:
                raise GenlabError(f"{path} is missing or was changed since the run was created (SHA-256 mismatch); "
                                  "the run cannot read its data the same way. Restore the file from a backup.")
            out[name] = path.read_bytes()
        return out

    def output_context(self) -> dict[str, Any]:
        """What the writers of this run's outputs need: class names, a token decoder, a sample rate."""
        context: dict[str, Any] = {"class_names": self.spec.class_names}
        if "sample_rate" in self.spec.extras:
            context["sample_rate"] = self.spec.extras["sample_rate"]
        if self.spec.kind == "tokens" and self.asset_digests:
            from .data.text import tokenizer_from_assets

            context["decode"] = tokenizer_from_assets(self.assets()).decode
        return context

    # ------------------------------------------------------------------ models
    def build_model(self, attach_references: bool = True):
        cls = get_model_class(self.model_name)
        # a setting naming another run may be relative to wherever the run was made; the recorded path is absolute
        config = replace(self.model_config, **{name: ref["path"] for name, ref in self.references.items()
                                               if hasattr(self.model_config, name)})
        model = cls(config, self.spec, self.conditions)
        if attach_references:
            for name, ref in self.references.items():
                model.attach_reference(name, load_reference(ref, self.path))
        return model

    def load_model(self, checkpoint: str = "latest", ema: bool = True, device: str | torch.device | None = None):
        """The model with the weights of `checkpoint` ("latest", "best" or "step-..."), in eval mode."""
        device = resolve_device(str(device)) if device is not None else resolve_device("auto")
        key = (checkpoint, ema, str(device))
        if key not in self._models:
            step_dir, meta, model_state, ema_state = self.load_weights(checkpoint)
            model = self.build_model()
            ckpt.load_weights(model, ema_state if ema else model_state, step_dir)
            model.checkpoint_step = meta["step"]
            model = model.to(device).eval()
            if model.prefers_channels_last:  # a model loaded here only samples: its fastest layout
                model.to(memory_format=torch.channels_last)
            self._models[key] = model
        return self._models[key]

    def load_weights(self, checkpoint: str = "latest") -> tuple[Path, dict, dict, dict]:
        """(step dir, meta, model weights, EMA weights) of `checkpoint`, renamed to this format's names."""
        step_dir = ckpt.resolve(self.checkpoints, checkpoint)
        meta, model_state, ema_state, _ = ckpt.load(step_dir, self.model_name)
        version = int(meta.get("format_version", 1))
        if version < FORMAT_VERSION:
            cls = get_model_class(self.model_name)
            model_state, ema_state = cls.migrate_state_dict(model_state, version), cls.migrate_state_dict(ema_state, version)
        return step_dir, meta, model_state, ema_state

    def has_checkpoint(self) -> bool:
        return ckpt.resolve(self.checkpoints, "latest", must_exist=False) is not None

    # ------------------------------------------------------------------ using it
    def sample(self, n: int, conditions: Batch | None = None, labels: torch.Tensor | list[int] | None = None,
               seed: int = 0, batch_size: int = 500, checkpoint: str = "latest", device: str | None = None,
               progress: bool = False, precision: str = "auto", compile: bool | None = None,
               report: dict[str, Any] | None = None, **options: Any) -> torch.Tensor:
        """n samples (CPU float32, data range) from the EMA weights, in batches, reproducible by `seed`.

        Args:
            conditions: named condition tensors with one entry per sample, e.g. {"label": tensor of n ints}.
            labels: shorthand for conditions={"label": labels}.
            precision: "auto" (bf16 where the hardware has it), "fp32", "bf16" or "fp16".
            compile: torch.compile the networks first; None: when the job is long enough to pay.
            report: filled with the precision used and compilation details.
            **options: the model's sampling options (sampler, steps, guidance_scale...).
        """
        from .sampling import sample_in_batches

        if n < 1:
            raise ArgumentError(f"number of samples must be at least 1, got {n}")
        conditions = dict(conditions or {})
        if labels is not None:
            conditions[LABEL] = torch.as_tensor(labels).long().reshape(-1)
        model = self.load_model(checkpoint, device=device)
        options = load_run_options(model, options)
        try:
            return sample_in_batches(model, n, conditions, seed=seed, batch_size=batch_size, options=options,
                                     progress=f"sampling {self.model_name}" if progress else None,
                                     precision=precision, compile=compile, report=report)
        except (ValueError, TypeError) as e:  # a model's own refusal (an option or condition it lacks)
            if isinstance(e, GenlabError):
                raise
            raise ArgumentError(f"cannot sample {self.path}: {e}") from None

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
        rows = [r for r in self.metrics() if any(k.endswith("loss") for k in r)]
        latest = ckpt.resolve(self.checkpoints, "latest", must_exist=False)
        meta = json.loads((latest / "meta.json").read_text()) if latest and (latest / "meta.json").exists() else {}
        last = rows[-1] if rows else {}
        state_file = self.path / "train_state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        return {
            "run": str(self.path),
            "format_version": self.format_version,
            "model": self.model_name,
            "model_config": to_dict(self.model_config),
            "conditions": list(self.conditions),
            "train": to_dict(self.train_config),
            "data": self.data_info,
            "references": self.references,
            "init_from": self.init_from,
            "parameters": sum(p.numel() for p in self.build_model(attach_references=False).parameters()),
            "step": meta.get("step", 0),
            "checkpoint": str(latest) if latest else None,
            "train_seconds": state.get("train_seconds", last.get("time", 0.0)),
            "overhead_seconds": state.get("overhead_seconds", 0.0),  # previews, evaluations, checkpoints
            "effective_batch_size": state.get("effective_batch_size"),
            "world_size": state.get("world_size"),
            "status": state.get("status"),
            "precision": state.get("precision"),  # as resolved on the machine of the last session
            "compiled": state.get("compiled"),
            "compile_seconds": state.get("compile_seconds"),
            "last_losses": {k: v for k, v in last.items() if k not in ("step", "time", "samples_per_sec") and not k.startswith("lr")},
        }

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.model_name!r})"


# ---------------------------------------------------------------------------------------------- references
def reference_record(run_path: str | Path, checkpoint: str = "latest") -> dict[str, str]:
    """What a run records of a run it uses: absolute path, the exact checkpoint, its weights' SHA-256."""
    other = Run(run_path)
    step_dir = ckpt.resolve(other.checkpoints, checkpoint)
    meta = json.loads((step_dir / "meta.json").read_text())
    return {"path": str(other.path.resolve()), "model": other.model_name, "checkpoint": step_dir.name,
            "sha256": meta["sha256"]["ema.safetensors"]}


def load_reference(ref: dict[str, str], user: Path):
    """The frozen EMA model of a referenced run, after checking it is still the one recorded."""
    path = Path(ref["path"])
    step_dir = path / "checkpoints" / ref["checkpoint"]
    if not (step_dir / "ema.safetensors").exists():
        raise CheckpointError(f"run {user} uses {step_dir}, which no longer exists (moved or deleted). Put the run "
                              f"back at {path}, or edit 'references' in {user / 'config.yaml'} to its new place.")
    if file_digest(step_dir / "ema.safetensors") != ref["sha256"]:
        raise CheckpointError(f"run {user} uses {step_dir}, but its weights changed since (SHA-256 mismatch): "
                              f"{user} was trained on other weights. Restore the original run at {path}.")
    return Run(path).load_model(ref["checkpoint"], device="cpu")


def _migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """A format-1 config (genlab 0.1 before the core contract v2) -> format 2."""
    raw = dict(raw)
    mcfg = dict(raw.get("model_config") or {})
    conditional = bool(mcfg.pop("class_conditional", False))
    raw["model_config"] = mcfg
    info = dict(raw["data_info"])
    info.setdefault("conditions", ["label"] if info.get("num_classes") else [])
    raw["data_info"] = info
    raw["conditions"] = ["label"] if conditional and info.get("num_classes") else []
    return raw


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


def load_run_options(model, options: dict[str, Any]) -> dict[str, Any]:
    """`options` with each of the model's run options (e.g. a guiding classifier) that names a run
    directory replaced by that run's model, loaded on the model's device."""
    options = dict(options)
    for key in model.run_options:
        if isinstance(options.get(key), (str, Path)):
            path = Path(options[key])
            if not path.is_dir():
                raise ArgumentError(f"--{key} {path}: no such run directory")
            options[key] = Run(path).load_model(device=model.device)
    return options
