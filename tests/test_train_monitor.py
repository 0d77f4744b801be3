"""The collapse and divergence watch over adversarial training (genlab.train.monitor, the trainer's
--on-collapse): it fires on a collapsed generator and not on a healthy one, and a rollback restores the
last healthy weights at half the learning rate."""

from __future__ import annotations

import json
import os

import pytest
import torch

import genlab
from genlab.data import load_data
from genlab.data.base import LoadOptions
from genlab.errors import TrainingDiverged
from genlab.runs import Run
from genlab.train import checkpoint as ckpt
from genlab.train.monitor import CollapseWatch, diversity

from conftest import TINY_TRAIN_OPTIONS, tiny_config


class Replay(torch.nn.Module):
    """Stands in for a generator: `sample` returns the items it is given (a healthy or a collapsed one)."""

    def __init__(self, items: torch.Tensor):
        super().__init__()
        self.items = items
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.anchor.device

    def evaluation_conditions(self, n, real=None):
        return None

    def preview_options(self):
        return {}

    def sample(self, n, conditions=None, generator=None):
        return self.items[torch.arange(n) % len(self.items)]


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


def test_diversity_is_the_mean_pairwise_distance():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert diversity(x) == pytest.approx(5.0)
    assert diversity(torch.ones(5, 3)) == 0.0


@pytest.mark.parametrize("data", ["digits", "8gaussians"])
def test_the_watch_fires_on_a_collapsed_generator_and_not_on_a_healthy_one(data):
    source = load_data(data, LoadOptions())
    watch = CollapseWatch.for_data(source, seed=0)
    assert watch is not None and watch.count_classes is not None  # digits: the pinned classifier; 8gaussians: modes
    healthy = Replay(source.train_batch(0, 256, seed=0)["x"])  # other real items than the watch's reference
    readings = [watch.check(healthy, step) for step in (250, 500, 750)]
    assert all(r.alarm is None for r in readings)
    assert readings[-1].diversity == pytest.approx(1.0, abs=0.15)
    assert readings[-1].classes == watch.num_classes
    one_item = Replay(source.validation(1)["x"])  # every sample the same item
    collapsed = watch.check(one_item, 1000)
    assert collapsed.alarm is not None and "diversity" in collapsed.alarm
    assert collapsed.diversity < 0.01 and collapsed.classes == 1
    assert watch.best_diversity == readings[-1].diversity  # a collapsed reading never raises the bar
    assert watch.check(healthy, 1250).alarm is None


def test_an_unformed_generator_is_not_a_collapse():
    source = load_data("digits", LoadOptions())
    watch = CollapseWatch.for_data(source, seed=0)
    constant = Replay(torch.zeros(1, *source.shape))
    assert watch.check(constant, 250).alarm is None  # never spread out: nothing to fall from
    assert watch.check(constant, 500).alarm is None


def test_the_discriminator_winning_outright_is_reported():
    from genlab.registry import get_model_class

    source = load_data("digits", LoadOptions())
    cls = get_model_class("dcgan")
    model = cls(cls.config_class(**tiny_config("dcgan")), source.spec)
    assert model.health({"d_real": 1.0, "d_fake": -1.0, "d_loss": 0.6}) is None
    assert "wins outright" in model.health({"d_real": 7.0, "d_fake": -8.0, "d_loss": 0.001})


def _gan_run(tmp_path, **options):
    opts = {**TINY_TRAIN_OPTIONS, "checkpoint_every": 2, "keep_checkpoints": 5, **options}
    return genlab.train("dcgan", "digits", out=tmp_path / "gan", steps=4, model_config=tiny_config("dcgan"),
                        progress=False, **opts)


def test_rollback_restores_the_last_healthy_checkpoint_at_half_the_learning_rate(tmp_path):
    from genlab.api import load_run_data
    from genlab.train.trainer import Trainer

    run = _gan_run(tmp_path, collapse_every=2, on_collapse="rollback")
    healthy = {k: v.clone() for k, v in ckpt.load(ckpt.resolve(run.checkpoints, "step-00000004"), "dcgan")[1].items()}
    model = run.build_model()
    trainer = Trainer(run, model, load_run_data(run), progress=False)
    trainer.load_latest()
    assert trainer.last_healthy_step == 4
    trainer.fit(steps=6)  # two more steps: the weights move on, and step 6 is checkpointed
    assert not torch.equal(trainer.model.state_dict()["generator.0.stem.0.weight"], healthy["generator.0.stem.0.weight"])
    trainer.last_healthy_step = 4  # as if the watch had found step 6 collapsed
    trainer._alarm("a deliberate collapse")
    assert trainer.step == 4 and trainer.lr_scale == 0.5 and trainer.rollbacks == 1
    assert all(torch.equal(v, healthy[k]) for k, v in trainer.model.state_dict().items())
    assert (run.checkpoints / "collapsed-step-00000006").is_dir()
    assert ckpt.resolve(run.checkpoints, "latest").name == "step-00000004"
    rows = metrics(run.path)
    assert rows[-1]["alarm"] == "a deliberate collapse" and rows[-1]["rollback_to"] == 4
    before = [r for r in rows if r.get("step") == 5 and "lr_generator" in r][0]["lr_generator"]
    trainer.fit(steps=6)
    after = [r for r in metrics(run.path) if r.get("step") == 5 and "lr_generator" in r][-1]["lr_generator"]
    assert after == pytest.approx(before / 2)


def test_the_watch_rolls_back_a_collapse_during_training(tmp_path, monkeypatch):
    from genlab.train import monitor

    real_check = monitor.CollapseWatch.check

    def check(self, model, step):  # collapse once, at step 6
        reading = real_check(self, model, step)
        if step == 6 and not any(r.alarm for r in self.history):
            reading.alarm = "forced collapse"
        return reading

    monkeypatch.setattr(monitor.CollapseWatch, "check", check)
    run = _gan_run(tmp_path, collapse_every=2, on_collapse="rollback")
    run = genlab.train(resume=run.path, steps=8, progress=False)
    rows = metrics(run.path)
    alarms = [r for r in rows if "alarm" in r]
    assert [(r["step"], r["rollback_to"], r["lr_scale"]) for r in alarms] == [(6, 4, 0.5)]
    assert Run(run.path).info()["step"] == 8


def test_stop_on_collapse_ends_the_run_without_saving_the_collapsed_weights(tmp_path, monkeypatch):
    from genlab.train import monitor

    def check(self, model, step):
        return self._note(monitor.Reading(step, 0.0, None, "forced collapse" if step >= 4 else None))

    monkeypatch.setattr(monitor.CollapseWatch, "check", check)
    result = genlab.api.train_with_result("dcgan", "digits", out=tmp_path / "gan", steps=10, progress=False,
                                          model_config=tiny_config("dcgan"),
                                          **{**TINY_TRAIN_OPTIONS, "checkpoint_every": 2, "collapse_every": 2,
                                             "on_collapse": "stop"})
    assert result.status == "collapsed" and result.step == 4
    assert ckpt.resolve(result.run.checkpoints, "latest").name == "step-00000002"


def test_rollback_after_a_non_finite_loss(tmp_path, monkeypatch):
    from contract_models import register_test_models

    register_test_models()

    monkeypatch.setenv("GENLAB_TEST_NAN_AT", "0:5")  # a NaN at step 5, every time the run gets there
    with pytest.raises(TrainingDiverged):
        genlab.train("test-critic", "8gaussians", out=tmp_path / "critic", steps=10, progress=False,
                     **{**TINY_TRAIN_OPTIONS, "checkpoint_every": 2, "on_collapse": "rollback"})
    rows = metrics(tmp_path / "critic")
    alarms = [r for r in rows if "alarm" in r]
    # three rollbacks to the checkpoint before the NaN, each at half the rate, then it gives up
    assert [(r["rollback_to"], r["lr_scale"]) for r in alarms] == [(4, 0.5), (4, 0.25), (4, 0.125)]


def test_gans_are_scored_during_training_by_default_and_keep_their_best(tmp_path):
    options = {k: v for k, v in TINY_TRAIN_OPTIONS.items() if k != "eval_every"}
    run = genlab.train("dcgan", "digits", out=tmp_path / "gan", steps=3, model_config=tiny_config("dcgan"),
                       progress=False, **options)
    assert run.train_config.eval_every == 1000 and run.train_config.collapse_every == 250
    evals = [r for r in metrics(run.path) if "eval" in r]
    assert [r["step"] for r in evals] == [3] and evals[0]["eval"]["fid"] > 0  # the last step is scored
    assert ckpt.resolve(run.checkpoints, "best", must_exist=False) is not None
