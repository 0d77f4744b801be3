"""genlab.cli end to end: `typer`'s CliRunner for the commands, a real subprocess for exit codes and messages."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from genlab.cli import app, main
from genlab.data import dataset_infos
from genlab.registry import get_model_class, model_names

from conftest import tiny_set_args

FAST = ["--quiet", "--device", "cpu", "--batch-size", "16", "--set", "train.warmup_steps=0", "--set", "train.log_every=1"]


def invoke(*args) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`genlab ARGS` in this process through the console entry point -> (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["genlab", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code or 0, captured.out, captured.err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A class-conditional VAE on digits trained 3 steps through `genlab train`."""
    out = tmp_path_factory.mktemp("cli") / "vae-run"
    result = invoke("train", "vae", "--out", out, "--steps", 3, *FAST, *tiny_set_args("vae"), "--condition", "label")
    assert result.exit_code == 0, result.output
    assert f"finished: {out} at step 3" in result.stdout and "effective batch 16" in result.stdout
    return out


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory) -> Path:
    """An unconditional DDPM on digits after one step."""
    out = tmp_path_factory.mktemp("cli") / "ddpm-run"
    assert invoke("train", "ddpm", "--out", out, "--steps", 1, *FAST, *tiny_set_args("ddpm")).exit_code == 0
    return out


def test_models_lists_every_registered_model():
    result = invoke("models")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(model_names())
    for name, line in zip(model_names(), lines):
        cls = get_model_class(name)
        assert line.split()[:2] == [name, cls.family] and cls.description in line


def test_datasets_lists_every_dataset():
    result = invoke("datasets")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()[1:] if line and not line.startswith(" ")]
    assert names == [info.usage or info.name for info in dataset_infos()]
    assert {"imagefolder:PATH", "text:PATH", "digits", "mnist"} <= set(names)  # named sets and schemes alike


def test_train_writes_a_run(trained_run):
    assert (trained_run / "config.yaml").exists() and (trained_run / "checkpoints" / "latest").exists()
    assert [json.loads(line)["step"] for line in (trained_run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_sample_png(trained_run, tmp_path):
    result = invoke("sample", trained_run, "-n", 6, "--out", tmp_path / "grid.png")
    assert result.exit_code == 0 and "wrote 6 samples" in result.stdout
    with Image.open(tmp_path / "grid.png") as im:
        assert im.mode == "L" and im.size == (3 * 66 + 2, 2 * 66 + 2)  # 3 columns x 2 rows of 8x-enlarged digits


def test_sample_npz_content_and_seed(trained_run, tmp_path):
    for name, seed in (("a.npz", 1), ("b.npz", 1), ("c.npz", 2)):
        assert invoke("sample", trained_run, "-n", 5, "--seed", seed, "--out", tmp_path / name).exit_code == 0
    a, b, c = (np.load(tmp_path / name) for name in ("a.npz", "b.npz", "c.npz"))
    assert list(a.keys()) == ["images"]
    assert a["images"].dtype == np.uint8 and a["images"].shape == (5, 8, 8, 1)
    assert np.array_equal(a["images"], b["images"]) and not np.array_equal(a["images"], c["images"])


def test_sample_with_labels(trained_run, tmp_path):
    assert invoke("sample", trained_run, "-n", 5, "--labels", "3,7", "--out", tmp_path / "l.npz").exit_code == 0
    assert np.load(tmp_path / "l.npz")["labels"].tolist() == [3, 7, 3, 7, 3]
    assert invoke("sample", trained_run, "-n", 12, "--labels", "all", "--out", tmp_path / "all.npz").exit_code == 0
    assert np.load(tmp_path / "all.npz")["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_sample_with_a_diffusion_sampler(ddpm_run, tmp_path):
    result = invoke("sample", ddpm_run, "-n", 3, "--sampler", "ddim", "--steps", 4, "--eta", 0.5, "--out", tmp_path / "s.npz")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "s.npz")["images"].shape == (3, 8, 8, 1)


def test_resume_continues(trained_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    result = invoke("train", "--resume", run, "--steps", 5, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"finished: {run} at step 5" in result.stdout
    assert json.loads(invoke("info", run, "--json").stdout)["step"] == 5


def test_info_text_and_json(trained_run):
    text = invoke("info", trained_run)
    assert text.exit_code == 0
    assert "model      vae" in text.stdout and "status     finished  step 3" in text.stdout
    assert "batch      16 effective (1 process(es))" in text.stdout
    info = json.loads(invoke("info", trained_run, "--json").stdout)
    assert info["model"] == "vae" and info["step"] == 3 and info["status"] == "finished"
    assert info["world_size"] == 1 and info["effective_batch_size"] == 16
    assert info["model_config"]["latent_dim"] == 4 and info["conditions"] == ["label"]
    assert info["data"]["shape"] == [1, 8, 8] and info["parameters"] > 0
    assert info["checkpoint"].endswith("step-00000003") and "loss" in info["last_losses"]


# ------------------------------------------------------------------ errors: exit code 2, a message, no traceback
def test_unknown_model_lists_valid_names(genlab_cli):
    result = genlab_cli("train", "vea", "--steps", "1")
    assert result.returncode == 2
    assert "unknown model 'vea'. Valid models: " + ", ".join(sorted(model_names())) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_set_key(genlab_cli):
    result = genlab_cli("train", "vae", "--steps", "1", "--set", "latnet_dim=4")
    assert result.returncode == 2
    assert "unknown field(s) ['latnet_dim']" in result.stderr and "latent_dim" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "vae", "--steps", "1", "--set", "train.bacth_size=4"], "train: unknown field(s) ['bacth_size']"),
        (["train", "vae", "--steps", "1", "--set", "latent_dim=four"], "'four' is not a valid int"),
        (["train", "vae", "--steps", "1", "--set", "latent_dim"], "must look like key=value"),
        (["train", "vae", "--steps", "1", "--data", "mnsit"], "unknown dataset 'mnsit'"),
        (["train", "vae"], "give a training budget"),
        (["train", "vae", "--steps", "1", "--data", "mnist", "--data-dir", "{tmp}"], "no mnist files in"),
        (["info", "{tmp}"], "is not a genlab run"),
        (["train", "vae", "--steps", "1", "--batch-size", "5000"], "fewer than one batch of 5000"),
    ],
)
def test_user_errors(args, message, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2 and message in err, err
    assert "Traceback" not in err


def test_existing_out_is_refused(trained_run, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "train", "vae", "--out", trained_run, "--steps", 1, *FAST)
    assert code == 2 and "already holds a run" in err and "--resume" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", "4", "--labels", "12"], "class labels must lie in [0, 10)"),
        (["-n", "4", "--class", "seven"], "--class takes class numbers"),
        (["-n", "4", "--out", "samples.txt"], "that kind is written to .png"),
        (["--prompt", "a thick seven"], "this vae run takes no prompt (its conditions: label)"),
        (["--input", "x.png"], "this vae run takes no input file (its conditions: label)"),
        (["--mask", "x.png"], "this vae run takes no mask (its conditions: label)"),
        (["-n", "0"], "number of samples must be at least 1"),
        (["--checkpoint", "best"], "no checkpoint 'best'"),
    ],
)
def test_sample_errors(args, message, trained_run, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, "sample", trained_run, *args)
    assert code == 2 and message in err, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sampler", "plms"], "unknown sampler 'plms'; choose from ddpm, ddim, euler, heun, dpm++"),
        (["--sampler", "ddpm", "--steps", "7"], "the ddpm sampler always takes 50 steps; use --sampler ddim --steps 7"),
        (["--sampler", "ddim", "--steps", "0"], "DDIM steps must be between 1 and 50, got 0"),
        (["--labels", "1"], "this ddpm run was trained without class labels"),
    ],
)
def test_diffusion_sample_errors(args, message, ddpm_run, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, "sample", ddpm_run, "-n", "2", *args)
    assert code == 2 and message in err, err
    assert not (tmp_path / "samples.png").exists()
