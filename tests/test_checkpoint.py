"""genlab.train.checkpoint: re-saving a step never leaves a pointer to a missing directory; extra files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from genlab.errors import ArgumentError, CheckpointError
from genlab.train import checkpoint as ckpt


def states(value: float) -> tuple[dict, dict, dict]:
    model = {"w": torch.full((3, 2), value), "b": torch.arange(2.0)}
    ema = {"w": torch.full((3, 2), value / 2), "b": torch.zeros(2)}
    return model, ema, {"step": 4, "rng": torch.arange(5), "lr": 1e-3}


def save(root: Path, value: float, pointer: str = "latest", step: int = 4, **kwargs) -> Path:
    return ckpt.save(root, step, "vae", *states(value), pointer=pointer, **kwargs)


def weight(root: Path, which: str) -> float:
    _, model, _, _ = ckpt.load(ckpt.resolve(root, which), "vae")
    return float(model["w"][0, 0])


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_best_then_latest_at_the_same_step_leaves_both_pointers_loadable(tmp_path):
    root = tmp_path / "checkpoints"
    save(root, 1.0, "best")
    save(root, 2.0, "latest")  # same step: the directory is replaced
    assert ckpt.resolve(root, "best") == ckpt.resolve(root, "latest") == root / "step-00000004"
    assert weight(root, "best") == weight(root, "latest") == 2.0
    assert leftovers(root) == []


def test_an_exception_between_the_renames_puts_the_old_copy_back(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    save(root, 1.0, "best")
    real_replace = os.replace

    def failing_replace(src, dst):
        # the second rename of the swap: the new copy into the place the old one just left
        if ".tmp" in Path(src).name and Path(dst).name.startswith("step-"):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        save(root, 2.0, "latest")
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    assert weight(root, "best") == 1.0  # the old copy, whole and verified
    assert leftovers(root) == []  # neither the new copy nor the set-aside one is left behind


def test_a_kill_between_the_renames_leaves_a_readable_checkpoint(tmp_path):
    """What a hard kill after the first rename leaves: the step set aside, its name missing."""
    root = tmp_path / "checkpoints"
    step_dir = save(root, 1.0, "best")
    set_aside = root / ".step-00000004.old99999"
    os.replace(step_dir, set_aside)
    assert ckpt.resolve(root, "best") == set_aside  # readers use the copy set aside, without moving it
    assert weight(root, "best") == 1.0 and set_aside.exists()
    save(root, 3.0, "latest", step=6)  # the next save moves it back
    assert ckpt.resolve(root, "best") == step_dir and weight(root, "best") == 1.0
    assert weight(root, "latest") == 3.0 and leftovers(root) == []


def test_prune_keeps_pointed_steps_after_a_replace(tmp_path):
    root = tmp_path / "checkpoints"
    save(root, 1.0, "best", step=2)
    for step in (4, 6, 8):
        save(root, float(step), "latest", step=step, keep=1)
    assert sorted(p.name for p in root.glob("step-*")) == ["step-00000002", "step-00000008"]
    assert weight(root, "best") == 1.0 and weight(root, "latest") == 8.0


def test_extra_files_and_format_version_round_trip(tmp_path):
    root = tmp_path / "checkpoints"
    extra = {"tokenizer.json": b'{"vocab": ["a", "b"]}', "stats.bin": bytes(range(256))}
    step_dir = save(root, 1.0, extra_files=extra, format_version=3)
    meta, model, _, trainer_state = ckpt.load(step_dir, "vae")
    assert meta["format_version"] == 3 and meta["extra_files"] == ["stats.bin", "tokenizer.json"]
    assert set(meta["sha256"]) == {*ckpt.FILES, "extra/stats.bin", "extra/tokenizer.json"}
    assert torch.equal(model["w"], torch.ones(3, 2)) and trainer_state["lr"] == 1e-3
    assert ckpt.load_extra(step_dir) == extra


def test_without_extra_files_or_version(tmp_path):
    step_dir = save(tmp_path, 1.0)
    meta = json.loads((step_dir / "meta.json").read_text())
    assert "format_version" not in meta and meta["extra_files"] == []
    assert ckpt.load_extra(step_dir) == {}
    assert len(ckpt.load(step_dir, "vae")) == 4  # the return of load is unchanged


def test_a_damaged_extra_file_fails_load_and_load_extra(tmp_path):
    save(tmp_path, 1.0, step=2)
    step_dir = save(tmp_path, 1.0, extra_files={"tokenizer.json": b"{}"})
    (step_dir / "extra" / "tokenizer.json").write_bytes(b"{ }")
    damaged = step_dir / "extra" / "tokenizer.json"
    message = rf"{damaged} is missing, truncated or corrupt .* Earlier checkpoints: step-00000002"
    with pytest.raises(CheckpointError, match=message):
        ckpt.load(step_dir, "vae")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ckpt.load_extra(step_dir)
    (step_dir / "extra" / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        ckpt.load_extra(step_dir)


@pytest.mark.parametrize("extra, match", [
    ({"../escape": b""}, "not a plain file name"),
    ({"sub/file.json": b""}, "not a plain file name"),
    ({".hidden": b""}, "not a plain file name"),
    ({"text.txt": "not bytes"}, r"holds a str; pass bytes"),
])
def test_bad_extra_files_are_refused_before_writing(tmp_path, extra, match):
    with pytest.raises(ArgumentError, match=match):
        save(tmp_path / "checkpoints", 1.0, extra_files=extra)
    assert not (tmp_path / "checkpoints").exists()


def test_format_version_must_be_an_integer(tmp_path):
    with pytest.raises(ArgumentError, match="format_version must be an integer"):
        save(tmp_path, 1.0, format_version="2")
