"""genlab.train.distributed: a real 2-process data-parallel run on the CPU (gloo), through `genlab train --nproc 2`."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import genlab
from genlab.api import load_run_data
from genlab.errors import ArgumentError
from genlab.precision import autocast
from genlab.train import checkpoint as ckpt
from genlab.train.trainer import step_seed

from conftest import TINY_TRAIN_OPTIONS, tiny_config, tiny_set_args

STEPS, BATCH = 4, 8


@pytest.mark.slow
def test_two_process_run_matches_the_single_process_layout(genlab_cli, tmp_path):
    out = tmp_path / "ddp"
    result = genlab_cli("train", "dcgan", "--nproc", "2", "--out", out, "--steps", STEPS, "--batch-size", BATCH,
                        "--quiet", "--device", "cpu", "--checkpoint-every", 2, "--sample-every", 2,
                        *tiny_set_args("dcgan"), "--set", "train.log_every=1", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch.distributed.run --standalone --nproc_per_node=2" in result.stderr
    assert result.stdout.count("finished:") == 1, "more than one process reported"
    assert "effective batch 16" in result.stdout

    # rank 0 alone writes the run: one of each file, one metrics line per step
    # (digits' assets: its caption rule and tokenizer)
    assert sorted(p.name for p in out.iterdir()) == ["assets", "checkpoints", "config.yaml", "log.txt",
                                                    "metrics.jsonl", "samples", "train_state.json"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval" not in r] == list(range(1, STEPS + 1))
    # a GAN is scored at the end by default, on rank 0, and both processes save the best together
    assert [r["step"] for r in rows if "eval" in r] == [STEPS]
    log_lines = (out / "log.txt").read_text().splitlines()
    assert len(log_lines) == len(set(log_lines))
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-00000002.png", "step-00000004.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best", "latest", "step-00000002", "step-00000004"]
    state = json.loads((out / "train_state.json").read_text())
    assert state["status"] == "finished" and state["step"] == STEPS
    assert state["world_size"] == 2 and state["batch_size_per_process"] == BATCH
    assert state["effective_batch_size"] == 2 * BATCH

    single = genlab.train("dcgan", "digits", out=tmp_path / "single", steps=STEPS, progress=False,
                          model_config=tiny_config("dcgan"), **{**TINY_TRAIN_OPTIONS, "batch_size": BATCH})
    assert json.loads((single.path / "train_state.json").read_text())["effective_batch_size"] == BATCH
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(ckpt.resolve(out / "checkpoints") / name)
        b = load_file(ckpt.resolve(single.path / "checkpoints") / name)
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    ddp_samples, single_samples = genlab.load(out).sample(5, seed=1), single.sample(5, seed=1)
    assert ddp_samples.shape == single_samples.shape == (5, 1, 8, 8)
    assert ddp_samples.abs().max() <= 1.0

    # step 1's logged discriminator numbers are the mean over both ranks, each on its own shard of the batch
    # with its own random draws, from the same initial weights (those of a 0-step run with the same seed)
    init = genlab.train("dcgan", "digits", out=tmp_path / "init", steps=0, progress=False,
                        model_config=tiny_config("dcgan"), **{**TINY_TRAIN_OPTIONS, "batch_size": BATCH})
    model = init.load_model(ema=False).train()
    data = load_run_data(init)
    per_rank, shards = [], []
    for rank in range(2):
        batch = data.train_batch(0, BATCH, seed=0, rank=rank, world_size=2)
        shards.append(batch["x"])
        generator = torch.Generator().manual_seed(step_seed(0, 0, rank))
        with torch.no_grad(), autocast(torch.device("cpu"), genlab.load(out).info()["precision"]):
            logs = model.training_loss(batch, "discriminator", 0, generator).logs  # in the run's precision
        per_rank.append({k: float(v) for k, v in logs.items()})
    assert not torch.equal(shards[0], shards[1]), "both processes train on the same items"
    for key in ("d_loss", "d_real", "d_fake"):
        assert abs(rows[0][key] - (per_rank[0][key] + per_rank[1][key]) / 2) <= 2e-6, key

    # a single process would draw other batches: the resume is refused, naming what changes
    with pytest.raises(ArgumentError, match="processes 2 -> 1 would change the order of its batches"):
        genlab.train(resume=out, steps=STEPS + 1, progress=False)
