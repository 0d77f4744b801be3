"""Progressive distillation: the rounds, the student against its teacher, the teacher check, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import genlab
from genlab.cli import app
from genlab.errors import GenlabError
from genlab.runs import Run

from conftest import TINY_TRAIN_OPTIONS, tiny_config

FAST = {**TINY_TRAIN_OPTIONS, "batch_size": 32}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small v-predicting DDPM trained long enough on digits that its DDIM chain is a real map."""
    out = tmp_path_factory.mktemp("teacher") / "ddpm"
    return genlab.train("ddpm", "digits", out=out, steps=150, model_config=tiny_config("ddpm", prediction="v"),
                        progress=False, lr=2e-3, **FAST)


def ddim(model, steps: int, seed: int = 0) -> torch.Tensor:
    return model.sample(64, generator=torch.Generator().manual_seed(seed), sampler="ddim", steps=steps).float()


@pytest.mark.slow
def test_the_student_at_its_step_count_beats_the_teacher_at_that_count(teacher, tmp_path):
    run = genlab.distill(teacher.path, student_steps=2, teacher_steps=4, out=tmp_path / "student", steps=250,
                         progress=False, lr=1e-3, **FAST)
    student, ddpm = run.load_model(device="cpu"), teacher.load_model(device="cpu")
    assert student.current_steps == 2 and student.network_calls() == 2
    reference = ddim(ddpm, 4)  # what the student learned to do in half the steps, from the same noise
    student_error = (student.sample(64, generator=torch.Generator().manual_seed(0)).float() - reference).pow(2).mean()
    teacher_error = (ddim(ddpm, 2) - reference).pow(2).mean()
    assert student_error < 0.5 * teacher_error, f"student {student_error:.4f} vs the teacher's own 2 steps {teacher_error:.4f}"


def test_each_round_halves_the_steps_and_the_student_becomes_the_teacher(teacher, tmp_path):
    run = genlab.distill(teacher.path, student_steps=2, teacher_steps=8, round_steps=3, out=tmp_path / "s", steps=4,
                         progress=False, **FAST)
    model = run.load_model(device="cpu", ema=False)
    assert model.num_rounds == 2 and model.current_steps == 2  # 8 -> 4 in steps 0-2, 4 -> 2 from step 3
    # the second round's teacher is the student as it was at step 3, not the original teacher
    original = teacher.load_model(device="cpu").state_dict()
    assert any(not torch.equal(v, original[k]) for k, v in model.round_teacher.state_dict().items())
    assert model.sample_options() == {"steps": 2, "sampler": "ddim"}
    with pytest.raises(GenlabError, match="distilled for DDIM with 2 steps"):
        model.sample(2, steps=4)
    early = genlab.distill(teacher.path, student_steps=2, teacher_steps=8, round_steps=3, out=tmp_path / "e", steps=2,
                           progress=False, **FAST)
    assert early.load_model(device="cpu").current_steps == 4  # stopped inside the first round


def test_settings_that_cannot_work_are_refused(teacher, tmp_path):
    with pytest.raises(GenlabError, match="power of 2"):
        genlab.distill(teacher.path, student_steps=3, teacher_steps=16, out=tmp_path / "a", steps=1, progress=False,
                       **FAST)
    with pytest.raises(GenlabError, match="diffusion run to distil"):
        genlab.train("progressive-distillation", "digits", out=tmp_path / "b", steps=1, progress=False, **FAST)
    conditional = genlab.train("ddpm", "digits", out=tmp_path / "c", steps=1, model_config=tiny_config("ddpm"),
                               condition="label", progress=False, **FAST)
    with pytest.raises(GenlabError, match="unconditional diffusion runs only"):
        genlab.distill(conditional.path, out=tmp_path / "d", steps=1, progress=False, **FAST)


def test_the_student_refuses_a_changed_teacher(tmp_path):
    teacher = genlab.train("ddpm", "digits", out=tmp_path / "t", steps=2, model_config=tiny_config("ddpm"),
                           progress=False, **FAST)
    student = genlab.distill(teacher.path, student_steps=2, teacher_steps=4, out=tmp_path / "s", steps=2,
                             progress=False, **FAST)
    weights = next((teacher.path / "checkpoints").glob("*/ema.safetensors"))
    state = load_file(weights)
    key = next(iter(state))
    state[key] = state[key] + 1.0
    save_file(state, weights)
    with pytest.raises(GenlabError, match="weights changed"):
        Run(student.path).load_model(device="cpu")


def test_distill_and_sample_from_the_command_line(teacher, tmp_path):
    out = tmp_path / "cli-student"
    result = CliRunner().invoke(app, ["distill", str(teacher.path), "--student-steps", "2", "--teacher-steps", "4",
                                      "--steps", "2", "--out", str(out), "--quiet", "--device", "cpu",
                                      "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    assert "samples in 2 DDIM steps" in result.output
    result = CliRunner().invoke(app, ["sample", str(out), "-n", "4", "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").exists()


def test_a_student_made_with_a_relative_teacher_path_opens_from_any_directory(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    genlab.train("ddpm", "digits", out="runs/teacher", steps=2, model_config=tiny_config("ddpm"), progress=False,
                 **FAST)
    genlab.distill("runs/teacher", student_steps=2, teacher_steps=4, out="runs/student", steps=2, progress=False,
                   **FAST)
    monkeypatch.chdir(tmp_path / "elsewhere")
    student = Run(tmp_path / "runs" / "student")
    assert Path(student.model_config.teacher).is_absolute()  # the config names the run it recorded
    assert student.load_model(device="cpu").sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)
    # runs saved before the path was made absolute keep the relative one in their config
    config = tmp_path / "runs" / "student" / "config.yaml"
    text = config.read_text()
    assert text.count(f"teacher: {student.model_config.teacher}") == 1  # the model setting, not the references record
    config.write_text(text.replace(f"teacher: {student.model_config.teacher}", "teacher: runs/teacher"))
    assert Run(tmp_path / "runs" / "student").model_config.teacher == "runs/teacher"
    assert Run(tmp_path / "runs" / "student").load_model(device="cpu").current_steps == 2


def test_the_adversarial_term_judges_the_students_samples_and_trains_only_the_discriminator_in_its_phase(
        teacher, tmp_path):
    plain = genlab.distill(teacher.path, student_steps=2, teacher_steps=4, out=tmp_path / "plain", steps=1,
                           progress=False, **FAST).load_model(device="cpu", ema=False)
    assert not hasattr(plain, "discriminator") and [s.name for s in plain.optimizers()] == ["model"]
    run = genlab.distill(teacher.path, student_steps=2, teacher_steps=4, out=tmp_path / "add", steps=3,
                         adversarial_weight=0.5, progress=False, **FAST)
    model = run.load_model(device="cpu", ema=False).train()
    assert [s.name for s in model.optimizers()] == ["model", "discriminator"]
    assert {"d_loss", "g_loss"} <= set(json.loads((run.path / "metrics.jsonl").read_text().splitlines()[-1]))
    batch = {"x": torch.rand(16, 1, 8, 8) * 2 - 1}
    with pytest.raises(RuntimeError, match="after the student's"):
        model.training_loss(batch, "discriminator", 5, torch.Generator().manual_seed(0))
    out = model.training_loss(batch, "model", 5, torch.Generator().manual_seed(0))
    # the total is the distillation loss plus the weighted generator loss on the last step's estimates
    assert torch.allclose(out.loss, out.logs["loss"] + 0.5 * out.logs["g_loss"])
    fake, _ = model._judged
    # a fixed share: with 2 student steps, every second item is at the last step
    assert len(fake) == 8 and not fake.requires_grad  # the discriminator phase judges them without reaching the student
    d = model.training_loss(batch, "discriminator", 5, torch.Generator().manual_seed(0))
    # the non-saturating loss plus gamma / 2 times R1 on the real images
    assert d.logs["r1"] > 0 and torch.allclose(d.loss, d.logs["d_loss"] + 0.5 * model.config.r1_weight * d.logs["r1"])
    d.loss.backward()
    assert all(p.grad is not None for p in model.discriminator.parameters())
    assert all(p.grad is None for p in model.student.parameters())
    with pytest.raises(GenlabError, match="adversarial_weight"):
        genlab.distill(teacher.path, student_steps=2, teacher_steps=4, out=tmp_path / "bad", steps=1,
                       adversarial_weight=-1.0, progress=False, **FAST)
