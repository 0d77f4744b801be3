"""The eval, detect, report and features commands. A few run as real subprocesses (exit codes, the
installed entry point); the rest go through typer's in-process runner, which costs no interpreter start."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from eval_fixtures import default_digits_features, digits, eval_cache  # noqa: F401
from genlab.cli import app
from genlab.train import checkpoint as ckpt

TINY_DDPM = ["--set", "base_channels=8", "--set", "num_timesteps=20", "--set", "sampling_steps=4"]
FAST = ["-n", "40", "--kid-subsets", "5", "--likelihood-n", "20"]


def invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_sweep_table_and_report(genlab_cli, train_tiny, tmp_path, default_digits_features):
    run = train_tiny("ddpm", steps=2, out=tmp_path / "runs" / "ddpm")
    res = genlab_cli("eval", run.path, "--sampler", "ddim", "--steps", "2,3", *FAST, "--json")
    assert res.returncode == 0, res.stderr
    entries = json.loads(res.stdout)
    assert [e["protocol"]["steps"] for e in entries] == [2, 3]
    assert entries[0]["protocol"]["features_sha256"] == default_digits_features.sha256  # the cached network
    out = invoke("eval", run.path, *FAST)
    assert "FID (lower is better)" in out and "class accuracy on the validation split" in out
    assert "not comparable" in out and "bits/dim" in out and "samples/s" in out
    assert len(json.loads((run.path / "eval.json").read_text())["entries"]) == 3
    assert "report:" in invoke("report", run.path, "--out", tmp_path / "rep" / "report.html")
    assert (tmp_path / "rep" / "report.html").exists() and (tmp_path / "rep" / "report-steps.png").exists()


def test_detect_then_score_a_folder(genlab_cli, train_tiny, tmp_path):
    from PIL import Image

    run = train_tiny("dcgan", steps=1, out=tmp_path / "gan")
    res = genlab_cli("detect", run.path, "-n", "80", "--epochs", "1", "--json")
    assert res.returncode == 0, res.stderr
    entry = json.loads(res.stdout)
    assert 0 <= entry["auc"] <= 1
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "black.png")
    out = invoke("detect", "--score", folder, "--detector", run.path / entry["files"]["detector"])
    assert "black.png" in out and "mean probability of being generated" in out


def test_features_train_prints_the_yardstick(default_digits_features):
    out = invoke("features", "train", "--data", "digits")
    assert default_digits_features.sha256[:12] in out and "% class accuracy" in out


def test_errors_are_one_line_and_exit_2(genlab_cli, tmp_path):
    np.savez(tmp_path / "s.npz", images=np.zeros((4, 8, 8, 1), np.uint8))
    res = genlab_cli("eval", "s.npz")
    assert res.returncode == 2 and "error: name the data to compare with: --data NAME" in res.stderr
    assert "Traceback" not in res.stderr


def test_train_with_eval_every_keeps_the_best(tmp_path, default_digits_features):
    invoke("train", "ddpm", "--data", "digits", "--steps", "4", "--eval-every", "2", "--batch-size", "16",
           "--out", tmp_path / "run", "--quiet", "--device", "cpu", *TINY_DDPM, "--set", "train.eval_samples=32")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert evals[0]["eval"]["protocol"]["num_samples"] == 32 and evals[0]["eval"]["protocol"]["sampler"] == "dpm++"  # the preview sampler
    assert ckpt.resolve(tmp_path / "run" / "checkpoints", "best") is not None


def test_likelihood_options_reach_the_models_bound(train_tiny, tmp_path, default_digits_features):
    run = train_tiny("vae", steps=2, out=tmp_path / "vae")
    entry = json.loads(invoke("eval", run.path, *FAST, "--likelihood-option", "k=5", "--json", "--no-write"))
    assert entry["likelihood"]["bound"] == "IWAE k=5" and entry["likelihood"]["options"] == {"k": 5}
    elbo = json.loads(invoke("eval", run.path, *FAST, "--json", "--no-write"))["likelihood"]
    assert elbo["bound"] == "ELBO" and elbo["bits_per_dim"] > entry["likelihood"]["bits_per_dim"]
    bad = CliRunner().invoke(app, ["eval", str(run.path), *FAST, "--likelihood-option", "k"])
    assert bad.exit_code == 2 and "--likelihood-option takes key=value" in bad.output
    unknown = CliRunner().invoke(app, ["eval", str(run.path), *FAST, "--likelihood-option", "temperature=2"])
    assert "VAE's likelihood takes no option temperature" in str(unknown.exception)  # a GenlabError: exit 2 in main
