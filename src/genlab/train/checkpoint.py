"""Checkpoints that carry no code, written atomically, verified on load.

checkpoints/step-00001234/  model.safetensors, ema.safetensors (weights and buffers),
                            state.pt (optimizer states and RNG states: tensors and numbers only,
                            loaded with weights_only=True), extra/NAME (small files the caller keeps
                            with the weights: a tokenizer, normalisation statistics), meta.json (step,
                            model, the caller's format_version, sha256 of each file)
checkpoints/latest, checkpoints/best: one-line pointers to a step directory, replaced atomically.

A step directory is written under a temporary name and renamed into place, so a crash mid-write never
leaves a half checkpoint behind a pointer. Saving a step that already exists (the best and the latest
at the same step) must not open a gap either, so it swaps in two renames: the old copy moves aside to
`.step-N.oldPID`, the new one moves in, and only then is the old one deleted. An exception between the
renames puts the old copy back; after a hard kill between them `resolve` reads the copy set aside, and
the next `save` moves it back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import ArgumentError, CheckpointError
from ..files import file_digest

FILES = ("model.safetensors", "ema.safetensors", "state.pt")
EXTRA_DIR = "extra"
_EXTRA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a plain file name: no folders, no hidden files


def _write_pointer(path: Path, target: str) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(target + "\n")
    os.replace(tmp, path)


def _check_extra(extra_files: dict[str, bytes] | None) -> dict[str, bytes]:
    checked = {}
    for name, content in (extra_files or {}).items():
        if not isinstance(name, str) or not _EXTRA_NAME.fullmatch(name):
            raise ArgumentError(f"extra checkpoint file name {name!r} is not a plain file name; use letters, "
                                "digits, '.', '_' and '-' only (e.g. 'tokenizer.json')")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ArgumentError(f"extra checkpoint file '{name}' holds a {type(content).__name__}; pass bytes "
                                "(e.g. json.dumps(obj).encode())")
        checked[name] = bytes(content)
    return checked


def save(ckpt_root: Path, step: int, model_name: str, model_state: dict, ema_state: dict,
         trainer_state: dict[str, Any], keep: int = 2, pointer: str = "latest", *,
         extra_files: dict[str, bytes] | None = None, format_version: int | None = None) -> Path:
    """Write step `step` atomically, point `pointer` at it, and prune old step directories.

    Saving a step that already exists replaces it without a moment where a pointer names a missing
    directory (see the module docstring).

    Args:
        ckpt_root: The run's checkpoints directory.
        step: The training step; names the directory `step-%08d`.
        model_name: Registry name of the model; `load` refuses a checkpoint of another model.
        model_state: The model's state dict (tensors only).
        ema_state: The EMA copy's state dict (tensors only).
        trainer_state: Optimizer and RNG states: tensors, numbers, strings, lists and dicts only.
        keep: How many of the newest step directories to keep, besides those `latest` and `best`
            point to; 0 keeps all.
        pointer: The pointer to move to this step (`latest` or `best`).
        extra_files: Small files to keep with the weights, file name -> content (a tokenizer, data
            statistics). Checksummed in meta.json like the weights, verified by `load`, read back with
            `load_extra`.
        format_version: The caller's version of what it stores, recorded in meta.json so that a later
            reader can convert or refuse an old checkpoint. Not recorded when None.

    Returns:
        The step directory.
    """
    extra = _check_extra(extra_files)
    if format_version is not None and (isinstance(format_version, bool) or not isinstance(format_version, int)):
        raise ArgumentError(f"checkpoint format_version must be an integer, got {format_version!r}")
    ckpt_root.mkdir(parents=True, exist_ok=True)
    _recover(ckpt_root)
    name = f"step-{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".{name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    contiguous = _unshared
    try:
        save_file(contiguous(model_state), tmp / "model.safetensors")
        save_file(contiguous(ema_state), tmp / "ema.safetensors")
        torch.save(trainer_state, tmp / "state.pt")
        files = list(FILES)
        if extra:
            (tmp / EXTRA_DIR).mkdir()
            for extra_name, content in extra.items():
                (tmp / EXTRA_DIR / extra_name).write_bytes(content)
                files.append(f"{EXTRA_DIR}/{extra_name}")
        meta: dict[str, Any] = {"model": model_name, "step": step}
        if format_version is not None:
            meta["format_version"] = format_version
        meta["saved_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        meta["extra_files"] = sorted(extra)
        meta["sha256"] = {f: file_digest(tmp / f) for f in files}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    except BaseException:  # a full disk or Ctrl-C mid-write: drop the partial copy, keep the last good one
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _move_into_place(tmp, final)
    _write_pointer(ckpt_root / pointer, name)
    _prune(ckpt_root, keep)
    return final


def _move_into_place(new: Path, final: Path) -> None:
    """Rename `new` to `final`; an existing `final` is set aside first and deleted only once `new` is in."""
    if not final.exists():
        os.replace(new, final)
        return
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        if final.exists():  # interrupted just after the rename: the new copy is in, the old one can go
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)
            shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _set_aside(step_dir: Path) -> Path | None:
    """The copy of `step_dir` that an interrupted swap left at `.step-N.oldPID`, if any."""
    copies = sorted(d for d in step_dir.parent.glob(f".{step_dir.name}.old*") if d.is_dir())
    return copies[0] if copies else None


def _recover(ckpt_root: Path) -> None:
    """Finish swaps a hard kill interrupted: move a set-aside copy back, or delete it if replaced."""
    for old in sorted(d for d in ckpt_root.glob(".step-*.old*") if d.is_dir()):
        final = ckpt_root / old.name[1:].split(".old")[0]
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)


def mark(ckpt_root: Path, step_dir: Path, pointer: str) -> None:
    """Point `pointer` (`latest`, `best`) at an existing step directory."""
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
    # Readers never move directories (a writer may be between its two renames); they read the set-aside copy.
    set_aside = _set_aside(target)
    if set_aside is not None:
        return set_aside
    if not must_exist:
        return None
    available = sorted(d.name for d in ckpt_root.glob("step-*") if d.is_dir()) if ckpt_root.exists() else []
    hint = f" Available: {', '.join(available)}." if available else " The run has no checkpoints yet: train it first."
    raise CheckpointError(f"no checkpoint '{which}' in {ckpt_root}.{hint}")


def _fallback(step_dir: Path) -> str:
    others = sorted(d.name for d in step_dir.parent.glob("step-*") if d.is_dir() and d.name != step_dir.name)
    return (f" Earlier checkpoints: {', '.join(others)}; delete {step_dir} and point {step_dir.parent / 'latest'} "
            f"at one of them to go back." if others else "")


def _read_meta(step_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads((step_dir / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {step_dir} has no readable meta.json ({e}); it is corrupt or "
                              f"incomplete.{_fallback(step_dir)}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), dict):
        raise CheckpointError(f"checkpoint {step_dir} has a meta.json without checksums; it is corrupt or "
                              f"incomplete.{_fallback(step_dir)}")
    return meta


def _verify(step_dir: Path, meta: dict[str, Any], files: list[str]) -> None:
    for f in files:
        path = step_dir / f
        if not path.is_file() or file_digest(path) != meta["sha256"].get(f):
            raise CheckpointError(f"checkpoint file {path} is missing, truncated or corrupt (checksum mismatch)."
                                  f"{_fallback(step_dir)}")


def load(step_dir: Path, expected_model: str) -> tuple[dict, dict, dict, dict]:
    """Verify and read a step directory.

    Every file listed in meta.json is checked against its SHA-256, the extra files included; read those
    with `load_extra`. `meta["format_version"]` is the caller's number if one was saved.

    Args:
        step_dir: A step directory, as returned by `resolve`.
        expected_model: Registry name of the model the caller builds; another model's checkpoint is refused.

    Returns:
        (meta, model_state, ema_state, trainer_state).

    Raises:
        CheckpointError: meta.json or a file is missing, corrupt or unreadable, or the model differs.
    """
    meta = _read_meta(step_dir)
    if meta.get("model") != expected_model:
        raise CheckpointError(
            f"checkpoint {step_dir} holds a '{meta.get('model')}' model, but this run is '{expected_model}'. "
            "Point to a checkpoint of the same model."
        )
    _verify(step_dir, meta, sorted(set(FILES) | set(meta["sha256"])))
    try:
        model_state = load_file(step_dir / "model.safetensors")
        ema_state = load_file(step_dir / "ema.safetensors")
        trainer_state = torch.load(step_dir / "state.pt", map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"checkpoint {step_dir} cannot be read ({e}).{_fallback(step_dir)}") from None
    return meta, model_state, ema_state, trainer_state


def load_extra(step_dir: Path) -> dict[str, bytes]:
    """The extra files saved with a checkpoint (`save(..., extra_files=...)`), verified.

    Args:
        step_dir: A step directory, as returned by `resolve`.

    Returns:
        File name -> content; empty for a checkpoint saved without extra files.

    Raises:
        CheckpointError: meta.json or an extra file is missing or fails its checksum.
    """
    meta = _read_meta(step_dir)
    names = list(meta.get("extra_files") or [])
    _verify(step_dir, meta, [f"{EXTRA_DIR}/{name}" for name in names])
    return {name: (step_dir / EXTRA_DIR / name).read_bytes() for name in names}


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


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own memory: safetensors refuses tensors that share it, as tied
    weights do (a GPT's embedding and output layer); loading puts the same values back in the one tensor."""
    seen: set[int] = set()
    out = {}
    for key, value in state.items():
        tensor = value.detach().contiguous().cpu()
        if tensor.data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        out[key] = tensor
    return out


def set_aside_after(ckpt_root: Path, step: int) -> list[Path]:
    """Rename the checkpoints written after `step` to `collapsed-step-N` (kept, but never resumed from
    or pruned) and point `latest` back at the newest one left. A checkpoint `best` points to stays."""
    best = resolve(ckpt_root, "best", must_exist=False)
    moved = []
    for d in sorted(ckpt_root.glob("step-*")):
        if d.is_dir() and d != best and int(d.name.split("-")[1]) > step:
            target = d.with_name(f"collapsed-{d.name}")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(d, target)
            moved.append(target)
    kept = sorted(d for d in ckpt_root.glob("step-*") if d.is_dir() and int(d.name.split("-")[1]) <= step)
    if kept:
        mark(ckpt_root, kept[-1], "latest")
    return moved
