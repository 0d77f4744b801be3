"""genlab.train: exact resume, budgets, divergence, signals, run directories and checkpoints."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import genlab
from genlab.errors import CheckpointError, RunExistsError, TrainingDiverged
from genlab.files import file_digest
from genlab.registry import model_names
from genlab.runs import Run
from genlab.train import checkpoint as ckpt

from conftest import TINY_TRAIN_OPTIONS, tiny_config, training_data

UNTIMED = ("time", "samples_per_sec")


def metrics(run_path: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_path) / "metrics.jsonl").read_text().splitlines()]


def latest_dir(run_path: Path) -> Path:
    return ckpt.resolve(Path(run_path) / "checkpoints", "latest")


def train_state(run_path: Path) -> dict:
    return json.loads((Path(run_path) / "train_state.json").read_text())


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (rather than hang) when the body runs longer than `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------ exact resume
@pytest.mark.parametrize("model_name", model_names())
def test_resume_equals_an_uninterrupted_run(model_name, train_tiny, tmp_path):
    # 404 items per batch: 4 steps per epoch, so the resumed half crosses an epoch; warm-up spans the cut
    data, data_options = training_data(model_name)
    # total_steps: the 3-step half stands for a 6-step run interrupted at 3 (a cosine schedule's length)
    options = dict(batch_size=404, warmup_steps=4, checkpoint_every=2, total_steps=6, data=data, **data_options)
    whole = train_tiny(model_name, steps=6, out=tmp_path / "whole", **options)
    if whole.info()["parameters"] == 0:
        pytest.skip(f"{model_name} is fitted once by fit(data): it has no steps to resume")
    train_tiny(model_name, steps=3, out=tmp_path / "half", **options)
    resumed = genlab.train(resume=tmp_path / "half", steps=6, progress=False)

    assert whole.info()["step"] == resumed.info()["step"] == 6
    assert train_state(resumed.path)["status"] == "finished"
    rows_whole, rows_resumed = metrics(whole.path), metrics(resumed.path)
    assert [r["step"] for r in rows_whole] == [r["step"] for r in rows_resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(rows_whole, rows_resumed):
        assert a.keys() == b.keys()
        for key in a.keys() - set(UNTIMED):
            assert abs(a[key] - b[key]) <= 1e-6, f"step {a['step']}: {key} {a[key]} != {b[key]}"
    for name in ("model.safetensors", "ema.safetensors"):
        w, r = load_file(latest_dir(whole.path) / name), load_file(latest_dir(resumed.path) / name)
        assert w.keys() == r.keys()
        for key in w:
            assert torch.equal(w[key], r[key]), f"{name}: {key} differs after resume"
    opt_w = torch.load(latest_dir(whole.path) / "state.pt", weights_only=True)["optimizers"]
    opt_r = torch.load(latest_dir(resumed.path) / "state.pt", weights_only=True)["optimizers"]
    assert _tensors(opt_w).keys() == _tensors(opt_r).keys()
    for key, value in _tensors(opt_w).items():  # moments, momentum buffers, step counts
        assert torch.equal(value, _tensors(opt_r)[key]), f"optimizer state {key} differs after resume"


def _tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested optimizer state dict, by its path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(state, (list, tuple)):
        return {k: v for i, value in enumerate(state) for k, v in _tensors(value, f"{prefix}/{i}").items()}
    return {}


def test_the_seed_fixes_the_initial_weights(train_tiny, tmp_path):
    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run = train_tiny("vae", steps=1, out=tmp_path / name, seed=seed)
        weights[name] = load_file(latest_dir(run.path) / "model.safetensors")
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not torch.equal(weights["a"]["decoder.stem.0.weight"], weights["c"]["decoder.stem.0.weight"])


def test_resume_refuses_model_changes(train_tiny, tmp_path):
    train_tiny("vae", steps=1, out=tmp_path / "run")
    with pytest.raises(genlab.errors.GenlabError, match="is a 'vae' run"):
        genlab.train("ddpm", resume=tmp_path / "run", steps=2, progress=False)
    with pytest.raises(genlab.errors.GenlabError, match="keeps its model config"):
        genlab.train(resume=tmp_path / "run", steps=2, overrides=["latent_dim=8"], progress=False)
    with pytest.raises(genlab.errors.GenlabError, match="give a training budget"):
        genlab.train("vae", out=tmp_path / "other")


# ------------------------------------------------------------------ budgets and divergence
def test_minutes_budget_stops_training(tmp_path):
    start = time.monotonic()
    with deadline(60):
        run = genlab.train("vae", "digits", out=tmp_path / "run", minutes=0.02, progress=False,
                           model_config=tiny_config("vae"), **TINY_TRAIN_OPTIONS)
    elapsed = time.monotonic() - start
    state = train_state(run.path)
    assert state["status"] == "finished" and state["step"] > 0
    assert 1.2 <= elapsed < 30
    assert state["train_seconds"] <= 1.2 + 0.5  # stops at the first step past the budget
    assert run.info()["step"] == state["step"] == metrics(run.path)[-1]["step"]


def poison_after(monkeypatch, model_cls, good_calls: int) -> None:
    """Make `model_cls.training_loss` return NaN after `good_calls` calls."""
    original = model_cls.training_loss
    calls = {"n": 0}

    def poisoned(self, x, labels, group, generator):
        out = original(self, x, labels, group, generator)
        calls["n"] += 1
        if calls["n"] > good_calls:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(model_cls, "training_loss", poisoned)


def test_nan_loss_stops_with_training_diverged_and_keeps_the_last_checkpoint(monkeypatch, train_tiny, tmp_path):
    from genlab.models.vae.vae import VAE

    poison_after(monkeypatch, VAE, good_calls=5)  # steps 0..4 are fine, step 5 is NaN
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as err:
        train_tiny("vae", steps=50, out=out, checkpoint_every=2)
    message = str(err.value)
    assert err.value.step == 5 and "non-finite at step 5" in message
    kept = out / "checkpoints" / "step-00000004"
    assert f"last good checkpoint is kept at {kept}" in message and "--lr" in message
    assert latest_dir(out) == kept and sorted(p.name for p in (out / "checkpoints").glob("step-*"))[-1] == kept.name
    _, model_state, _, _ = ckpt.load(kept, "vae")
    assert all(torch.isfinite(v).all() for v in model_state.values())
    state = train_state(out)
    assert state["status"] == "diverged" and state["step"] == 5
    assert [r["step"] for r in metrics(out)] == [1, 2, 3, 4, 5]
    # after lowering the lr (here: removing the poison) the run resumes from the kept checkpoint
    monkeypatch.undo()
    assert genlab.train(resume=out, steps=7, progress=False).info()["step"] == 7


def test_nan_before_the_first_checkpoint_says_so(monkeypatch, train_tiny, tmp_path):
    from genlab.models.diffusion.ddpm import DDPM

    poison_after(monkeypatch, DDPM, good_calls=0)
    with pytest.raises(TrainingDiverged, match="at step 0 .* no checkpoint had been written yet"):
        train_tiny("ddpm", steps=5, out=tmp_path / "run", checkpoint_every=2)


# ------------------------------------------------------------------ signals
def check_interrupted_run_resumes(out: Path, step: int, stdout: str) -> None:
    """An interrupted run: exit message, state, checkpoint and metrics at `step`; `--resume` goes on from there."""
    from typer.testing import CliRunner

    from genlab.cli import app

    assert f"genlab train --resume {out}" in stdout
    state = train_state(out)
    assert state["status"] == "interrupted" and state["step"] == step
    assert json.loads((latest_dir(out) / "meta.json").read_text())["step"] == step
    assert metrics(out)[-1]["step"] == step
    done = CliRunner().invoke(app, ["train", "--resume", str(out), "--steps", str(step + 3), "--quiet"])
    assert done.exit_code == 0, done.output
    assert f"at step {step + 3}" in done.stdout
    assert [r["step"] for r in metrics(out)] == list(range(1, step + 4))
    assert train_state(out)["status"] == "finished"


def test_sigterm_to_genlab_train_checkpoints_and_exits_130(genlab_command, tiny_model_set_args, tmp_path):
    out = tmp_path / "run"
    cmd = [*genlab_command, "train", "vae", "--out", str(out), "--steps", "1000000", "--quiet", "--device", "cpu",
           "--batch-size", "16", "--checkpoint-every", "5", *tiny_model_set_args("vae"),
           "--set", "train.log_every=1", "--set", "train.warmup_steps=0"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        give_up = time.monotonic() + 120
        while not ((out / "checkpoints" / "latest").exists() and (out / "metrics.jsonl").exists()):
            assert proc.poll() is None, f"genlab train ended early: {proc.communicate()}"
            assert time.monotonic() < give_up, "no checkpoint after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    step = train_state(out)["step"]
    assert step >= 5
    check_interrupted_run_resumes(out, step, stdout)


def test_ctrl_c_stops_at_the_end_of_the_step(monkeypatch, tiny_model_set_args, tmp_path):
    from typer.testing import CliRunner

    from genlab.cli import app
    from genlab.models.vae.vae import VAE

    original, calls = VAE.training_loss, {"n": 0}

    def pressed_during_step_7(self, *args):
        calls["n"] += 1
        if calls["n"] == 8:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args)

    monkeypatch.setattr(VAE, "training_loss", pressed_during_step_7)
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup and some CI runners
    result = CliRunner().invoke(app, ["train", "vae", "--out", str(out), "--steps", "50", "--quiet", "--device", "cpu",
                                      "--batch-size", "16", *tiny_model_set_args("vae"), "--set", "train.log_every=1"])
    assert result.exit_code == 130, result.output
    assert signal.getsignal(signal.SIGINT) is before, "the trainer left its handler installed"
    monkeypatch.undo()
    check_interrupted_run_resumes(out, 8, result.stdout)  # step 7 finishes, then the run stops


# ------------------------------------------------------------------ run directories
def test_existing_out_is_refused_unless_resume_or_overwrite(train_tiny, tmp_path):
    out = tmp_path / "run"
    train_tiny("vae", steps=2, out=out)
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(RunExistsError) as err:
        train_tiny("vae", steps=2, out=out)
    assert f"--resume {out}" in str(err.value) and "--overwrite" in str(err.value)
    assert (out / "metrics.jsonl").read_text() == before
    train_tiny("dcgan", steps=1, out=out, overwrite=True)
    assert Run(out).model_name == "dcgan" and [r["step"] for r in metrics(out)] == [1]


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(train_tiny, tmp_path):
    out = tmp_path / "my-photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(RunExistsError, match="not a genlab run"):
        train_tiny("vae", steps=1, out=out, overwrite=True)
    assert (out / "holiday.jpg").read_bytes() == b"precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train_tiny("vae", steps=1, out=empty).info()["step"] == 1  # an empty folder is fine


# ------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def base_runs(tmp_path_factory) -> dict[str, Path]:
    """A vae run with checkpoints at steps 2 and 4, and a dcgan run; tests copy them before damaging them."""
    root = tmp_path_factory.mktemp("base_runs")
    runs = {}
    for name, steps in (("vae", 4), ("dcgan", 2)):
        runs[name] = root / name
        genlab.train(name, "digits", out=runs[name], steps=steps, model_config=tiny_config(name), progress=False,
                     **{**TINY_TRAIN_OPTIONS, "checkpoint_every": 2})
    return runs


@pytest.fixture
def vae_run(base_runs, tmp_path) -> Path:
    path = tmp_path / "vae"
    shutil.copytree(base_runs["vae"], path)
    return path


def flip_bytes(path: Path, at: float = 0.5, count: int = 4) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def resume(path: Path):
    return genlab.train(resume=path, steps=10, progress=False)


@pytest.mark.parametrize("damage", ["truncate model", "flip ema", "flip state", "empty state"])
def test_damaged_checkpoint_gives_checkpoint_error(damage, vae_run):
    step_dir = vae_run / "checkpoints" / "step-00000004"
    kind, what = damage.split()
    target = step_dir / {"model": "model.safetensors", "ema": "ema.safetensors", "state": "state.pt"}[what]
    if kind == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif kind == "flip":
        flip_bytes(target)
    else:
        target.write_bytes(b"")
    expected = rf"{target} is missing, truncated or corrupt \(checksum mismatch\)\. Earlier checkpoints: step-00000002"
    with pytest.raises(CheckpointError, match=expected):
        resume(vae_run)
    with pytest.raises(CheckpointError, match=expected):
        Run(vae_run).load_model(ema=False)
    # the earlier checkpoint is still usable, as the message says
    assert Run(vae_run).load_model("step-00000002").checkpoint_step == 2


def test_unreadable_checkpoint_with_matching_checksum(vae_run):
    step_dir = vae_run / "checkpoints" / "step-00000004"
    (step_dir / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    meta = json.loads((step_dir / "meta.json").read_text())
    meta["sha256"]["model.safetensors"] = file_digest(step_dir / "model.safetensors")
    (step_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"checkpoint {step_dir} cannot be read"):
        Run(vae_run).load_model()
    (step_dir / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="no readable meta.json"):
        Run(vae_run).load_model()


def test_checkpoint_from_another_model(base_runs, vae_run):
    foreign = vae_run / "checkpoints" / "step-00000006"
    shutil.copytree(base_runs["dcgan"] / "checkpoints" / "step-00000002", foreign)
    ckpt.mark(vae_run / "checkpoints", foreign, "latest")
    with pytest.raises(CheckpointError, match="holds a 'dcgan' model, but this run is 'vae'"):
        Run(vae_run).load_model()
    with pytest.raises(CheckpointError, match="holds a 'dcgan' model"):
        resume(vae_run)


def test_checkpoint_from_another_config(vae_run):
    config = vae_run / "config.yaml"
    config.write_text(config.read_text().replace("base_channels: 8", "base_channels: 16"))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        Run(vae_run).load_model()


def test_missing_checkpoint_lists_the_available_ones(vae_run):
    with pytest.raises(CheckpointError, match="no checkpoint 'step-00000003'.*Available: step-00000002, step-00000004"):
        Run(vae_run).load_model("step-00000003")


def test_checkpoints_hold_no_pickled_objects(base_runs):
    for step_dir in sorted((base_runs["vae"] / "checkpoints").glob("step-*")):
        assert sorted(p.name for p in step_dir.iterdir()) == ["ema.safetensors", "meta.json", "model.safetensors", "state.pt"]
        state = torch.load(step_dir / "state.pt", map_location="cpu", weights_only=True)
        assert set(state) >= {"step", "optimizers", "torch_rng", "numpy_rng", "ema_updates"}
        assert state["step"] == int(step_dir.name.split("-")[1])
        assert isinstance(state["torch_rng"], torch.Tensor)
        meta = json.loads((step_dir / "meta.json").read_text())
        assert meta["model"] == "vae" and set(meta["sha256"]) == set(ckpt.FILES)
        assert load_file(step_dir / "model.safetensors").keys() == load_file(step_dir / "ema.safetensors").keys()


def test_checkpoint_writes_are_atomic_and_pruned(train_tiny, tmp_path):
    out = tmp_path / "run"
    train_tiny("vae", steps=5, out=out, checkpoint_every=1, keep_checkpoints=2)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-00000004", "step-00000005"]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]


def test_a_failed_checkpoint_write_leaves_the_previous_one_and_no_temp_dir(monkeypatch, train_tiny, tmp_path):
    out = tmp_path / "run"
    real_save_file = ckpt.save_file
    writes = {"n": 0}

    def failing_save_file(tensors, path):
        writes["n"] += 1
        if writes["n"] == 4:  # the ema file of the second checkpoint
            raise OSError(28, "No space left on device")
        real_save_file(tensors, path)

    monkeypatch.setattr(ckpt, "save_file", failing_save_file)
    with pytest.raises(OSError, match="No space left"):
        train_tiny("vae", steps=10, out=out, checkpoint_every=2)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-00000002"]
    assert latest_dir(out).name == "step-00000002"
    assert Run(out).load_model().checkpoint_step == 2


# ------------------------------------------------------------------ what a run directory holds
@pytest.mark.parametrize("data, model_name, condition", [("digits", "vae", "label"), ("8gaussians", "ddpm", None)])
def test_metrics_rows_and_sample_grids(data, model_name, condition, train_tiny, tiny_model_config, tmp_path):
    out = tmp_path / "run"
    run = train_tiny(model_name, steps=4, data=data, out=out, sample_every=2, log_every=1,
                     model_config=tiny_model_config(model_name), condition=condition)
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    loss_key = "loss"
    for row in rows:
        assert {"step", "time", "lr", "samples_per_sec", loss_key} <= row.keys()
        assert all(isinstance(v, (int, float)) for v in row.values())
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-00000002.png", "step-00000004.png"]
    with Image.open(out / "samples" / "step-00000004.png") as im:
        im.load()
        assert im.size == ((8 * 66 + 2,) * 2 if data == "digits" else (400, 400))  # 64 previews of 8x8 digits
    assert (out / "log.txt").exists() and (out / "config.yaml").exists()
    info = run.info()
    assert info["step"] == 4 and info["status"] == "finished" and info["world_size"] == 1
    assert info["effective_batch_size"] == 16 and info["last_losses"][loss_key] == rows[-1][loss_key]


def test_each_run_gets_its_own_log_file_even_when_an_earlier_one_is_gone(tmp_path):
    from genlab.train.trainer import _logger

    first, second = tmp_path / "a" / "log.txt", tmp_path / "b" / "log.txt"
    first.parent.mkdir(), second.parent.mkdir()
    _logger(first).info("one")
    first.unlink()
    _logger(second).info("two")
    _logger(first).info("three")  # same path again after its file was deleted: a fresh file, not a lost line
    assert "two" in second.read_text() and "three" in first.read_text() and "one" not in second.read_text()


def test_cosine_schedule_follows_the_time_budget_without_total_steps():
    from genlab.train.optim import lr_factor

    # with a length in steps, the step decides; with only a time budget, the share of it spent
    assert lr_factor("cosine", 50, 0, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor("cosine", 50, 0, None, 0.1) == 1.0  # no length at all: no decay
    assert lr_factor("cosine", 7, 0, None, 0.1, time_progress=0.5) == pytest.approx(0.55)
    assert lr_factor("cosine", 7, 0, None, 0.1, time_progress=1.0) == pytest.approx(0.1)
    assert lr_factor("cosine", 0, 10, None, 0.1, time_progress=0.0) == pytest.approx(0.1)  # warm-up first
    assert lr_factor("warmup", 50, 0, None, 0.1, time_progress=0.9) == 1.0


def test_a_minutes_budget_decays_a_cosine_schedule(tmp_path):
    import json

    import genlab

    run = genlab.train("vae", "digits", out=tmp_path / "r", minutes=0.05, progress=False, schedule="cosine",
                       min_lr_ratio=0.1, **{**TINY_TRAIN_OPTIONS, "lr": 1e-3}, model_config=tiny_config("vae"))
    lrs = [row["lr"] for row in map(json.loads, run.metrics_path.read_text().splitlines()) if "lr" in row]
    assert lrs[0] > 0.9e-3 and lrs[-1] < 0.3e-3, lrs
