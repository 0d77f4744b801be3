"""Checkpoints that carry no code, written atomically, verified on load.

checkpoints/step-00001234/  model.safetensors, ema.safetensors (weights and buffers),
                            state.pt (optimizer states and RNG states: tensors and numbers only,
                            loaded with weights_only=True), meta.json (step, model, sha256 of each file)
checkpoints/latest, checkpoints/best: one-line pointers to a step directory, replaced atomically.
A step directory is written under a temporary name and renamed into place, so a crash mid-write never
leaves a half checkpoint behind a pointer.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..files import file_digest

FILES = ("model.safetensors", "ema.safetensors", "state.pt")


def _write_pointer(path: Path, target: str) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(target + "\n")
    os.replace(tmp, path)


def save(ckpt_root: Path, step: int, model_name: str, model_state: dict, ema_state: dict,
         trainer_state: dict[str, Any], keep: int = 2, pointer: str = "latest") -> Path:
    """Write step `step` atomically, point `pointer` at it, and prune old step directories."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".{name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    contiguous = lambda sd: {k: v.detach().contiguous().cpu() for k, v in sd.items()}
    try:
        save_file(contiguous(model_state), tmp / "model.safetensors")
        save_file(contiguous(ema_state), tmp / "ema.safetensors")
        torch.save(trainer_state, tmp / "state.pt")
        meta = {"model": model_name, "step": step, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "sha256": {f: file_digest(tmp / f) for f in FILES}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    except BaseException:  # a full disk or Ctrl-C mid-write: drop the partial copy, keep the last good one
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_pointer(ckpt_root / pointer, name)
    _prune(ckpt_root, keep)
    return final


def mark(ckpt_root: Path, step_dir: Path, pointer: str) -> None:
    _write_pointer(ckpt_root / pointer, step_dir.name)


def _prune(ckpt_root: Path, keep: int) -> None:
    protected = {resolve(ckpt_root, p, must_exist=False) for p in ("latest", "best")}
    steps = sorted(d for d in ckpt_root.glob("step-*") if d.is_dir())
    for d in steps[:-keep] if keep else []:
        if d not in protected:
            shutil.rmtree(d, ignore_errors=True)


def resolve(ckpt_root: Path, which: str = "latest", must_exist: bool = True) -> Path | None:
    """`latest`, `best`, or a step directory name -> its path."""
    pointer = ckpt_root / which
    if pointer.is_file():
        target = ckpt_root / pointer.read_text().strip()
    else:
        target = ckpt_root / which
    if target.is_dir():
        return target
    if not must_exist:
        return None
    available = sorted(d.name for d in ckpt_root.glob("step-*") if d.is_dir()) if ckpt_root.exists() else []
    hint = f" Available: {', '.join(available)}." if available else " The run has no checkpoints yet: train it first."
    raise CheckpointError(f"no checkpoint '{which}' in {ckpt_root}.{hint}")


def load(step_dir: Path, expected_model: str) -> tuple[dict, dict, dict, dict]:
    """Verify and read a step directory -> (meta, model_state, ema_state, trainer_state)."""
    others = sorted(d.name for d in step_dir.parent.glob("step-*") if d.is_dir() and d != step_dir)
    fallback = (f" Earlier checkpoints: {', '.join(others)}; delete {step_dir} and point {step_dir.parent / 'latest'} "
                f"at one of them to go back." if others else "")
    meta_path = step_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {step_dir} has no readable meta.json ({e}); it is corrupt or incomplete.{fallback}") from None
    if meta.get("model") != expected_model:
        raise CheckpointError(
            f"checkpoint {step_dir} holds a '{meta.get('model')}' model, but this run is '{expected_model}'. "
            "Point to a checkpoint of the same model."
        )
    for f in FILES:
        path = step_dir / f
        if not path.exists() or file_digest(path) != meta["sha256"].get(f):
            raise CheckpointError(f"checkpoint file {path} is missing, truncated or corrupt (checksum mismatch).{fallback}")
    try:
        model_state = load_file(step_dir / "model.safetensors")
        ema_state = load_file(step_dir / "ema.safetensors")
        trainer_state = torch.load(step_dir / "state.pt", map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"checkpoint {step_dir} cannot be read ({e}).{fallback}") from None
    return meta, model_state, ema_state, trainer_state


def load_weights(module: torch.nn.Module, state: dict, where: Path) -> None:
    """load_state_dict with an error that says what does not match."""
    missing, unexpected = set(module.state_dict()) - set(state), set(state) - set(module.state_dict())
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {where} does not fit this model's architecture (missing {sorted(missing)[:4]}, "
            f"unexpected {sorted(unexpected)[:4]}); it was saved with another config."
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {where} does not fit this model: {str(e).splitlines()[0]} ...") from None
