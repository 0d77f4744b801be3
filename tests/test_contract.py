"""The model contract beyond the registered models: one small test model per capability (contract_models.py),
exact resume on every kind of data source, run references, fitted models, conditions other than labels,
runs from before the contract, locks, and two processes under torchrun."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import genlab
from genlab.errors import ArgumentError, CheckpointError, GenlabError, RunLockedError
from genlab.runs import Run
from genlab.train import checkpoint as ckpt

from conftest import REPO_ROOT, TINY_TRAIN_OPTIONS, tiny_config
from contract_models import TEST_MODELS

FAST = {**TINY_TRAIN_OPTIONS}


@pytest.fixture(autouse=True, scope="module")
def test_models_registered():
    """The test models are known to the registry while this module runs, and only then."""
    from genlab import registry

    with pytest.MonkeyPatch.context() as mp:
        for name, cls in TEST_MODELS.items():
            mp.setitem(registry._MODELS, name, f"{cls.__module__}:{cls.__name__}")
        yield


def train(model: str, data: str = "digits", out=None, steps: int = 3, **options):
    return genlab.train(model, data, out=out, steps=steps, progress=False, **{**FAST, **options})


def adam_steps(run: Run, name: str) -> int:
    state = torch.load(ckpt.resolve(run.checkpoints) / "state.pt", weights_only=True)
    return int(state["optimizers"][name]["state"][0]["step"])


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question. " * 40)
    return path


# ------------------------------------------------------------------ one test model per capability
def test_token_stream_model_learns_and_keeps_its_tokenizer(corpus, tmp_path):
    run = train("test-tokens", f"text:{corpus}", tmp_path / "lm", steps=60, batch_size=8, lr=0.05,
                data_options={"block_size": 16})
    losses = [r["loss"] for r in run.metrics() if "loss" in r]
    assert losses[-1] < 0.5 * losses[0], losses
    assert run.spec.kind == "tokens" and run.asset_digests, "the tokenizer is saved with the run"
    tokens = run.sample(3, seed=0)
    assert tokens.shape == (3, 17)
    from genlab.outputs import save_samples

    text = save_samples(tokens, tmp_path / "out.txt", "tokens", context=run.output_context()).read_text()
    assert "to" in text or "be" in text  # decoded with the run's own tokenizer, not ids
    # `genlab eval` on a token run: its held-out likelihood, below a uniform guess's
    entry = genlab.evaluate(run.path, write=False)
    assert entry["kind"] == "heldout" and entry["scores"]["val_loss"] < math.log(run.spec.vocab_size)
    # the run tokenises with its saved tokenizer, never one refitted to a changed file
    corpus.write_text("question: to be")
    with pytest.raises(GenlabError, match="characters the tokenizer does not know: ':'"):
        genlab.train(resume=run.path, steps=62, progress=False)


def test_two_domain_model_needs_and_gets_both_domains(tmp_path):
    with pytest.raises(ArgumentError, match="needs data with x_b"):
        train("test-two-domain", "digits", tmp_path / "one")
    run = train("test-two-domain", "domains:digits+digits", tmp_path / "two", steps=4)
    assert run.info()["step"] == 4
    source = torch.zeros(2, 1, 8, 8)
    assert run.sample(2, {"source": source}).shape == (2, 1, 8, 8)


def test_a_run_that_uses_another_run(tmp_path):
    vae = train("vae", "digits", tmp_path / "vae", model_config=tiny_config("vae"))
    prior = train("test-latent-prior", "digits", tmp_path / "prior", model_config={"autoencoder": str(vae.path)})
    ref = prior.references["autoencoder"]
    assert ref["path"] == str(vae.path.resolve()) and ref["checkpoint"] == "step-00000003" and len(ref["sha256"]) == 64
    # the VAE is frozen and outside this run's parameters, optimizer, EMA and checkpoint
    weights = ckpt.load(ckpt.resolve(prior.checkpoints), "test-latent-prior")[1]
    assert set(weights) == {"mean", "log_std"}
    assert adam_steps(prior, "model") == 3
    model = prior.load_model()
    assert sum(p.numel() for p in model.parameters()) == 2
    assert prior.sample(4, seed=0).shape == (4, 1, 8, 8)
    assert "autoencoder" in json.dumps(Run(prior.path).info()["references"])
    # a changed dependency is refused, naming both runs
    ema = vae.path / "checkpoints" / "step-00000003" / "ema.safetensors"
    original = ema.read_bytes()
    ema.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="weights changed since") as err:
        Run(prior.path).load_model()
    assert str(prior.path) in str(err.value) and str(vae.path.resolve()) in str(err.value)
    ema.write_bytes(original)
    moved = vae.path.rename(tmp_path / "vae-moved")
    with pytest.raises(CheckpointError, match="no longer exists"):
        Run(prior.path).load_model()
    moved.rename(vae.path)


def test_two_phases_with_n_critic_fresh_batches_two_learning_rates_and_ema_of_the_generator(tmp_path):
    run = train("test-critic", "8gaussians", tmp_path / "wgan", steps=3, lr=1e-3)
    assert adam_steps(run, "critic") == 15 and adam_steps(run, "generator") == 3
    rows = [r for r in run.metrics() if "critic_loss" in r]
    assert rows[-1]["lr_critic"] == pytest.approx(4e-3) and rows[-1]["lr_generator"] == pytest.approx(1e-3)
    state = torch.load(ckpt.resolve(run.checkpoints) / "state.pt", weights_only=True)
    assert state["batches_drawn"] == 3 * 5  # the step's batch, then a fresh one for each further critic repeat
    model = run.load_model(ema=False)
    ema = run.load_model(ema=True)
    assert torch.equal(ema.critic[0].weight, model.critic[0].weight)  # copied, not averaged
    assert not torch.equal(ema.generator[0].weight, model.generator[0].weight)  # averaged


def test_a_phase_every_k_steps_and_a_stage(tmp_path, monkeypatch):
    from contract_models import CriticModel
    from genlab.train.optim import Phase

    monkeypatch.setattr(CriticModel, "phases", lambda self: [Phase("critic", until_step=2),
                                                            Phase("generator", every=2)])
    run = train("test-critic", "8gaussians", tmp_path / "lazy", steps=5)
    assert adam_steps(run, "critic") == 2 and adam_steps(run, "generator") == 3  # steps 0, 2, 4


def test_a_model_without_parameters_is_fitted_and_gets_a_run(tmp_path):
    run = train("test-moments", "8gaussians", tmp_path / "moments", steps=10)
    assert run.info()["step"] == 1 and run.has_checkpoint() and run.info()["status"] == "finished"
    x = run.sample(4000, seed=0)
    data = genlab.data.load_dataset("8gaussians")
    assert torch.allclose(x.mean(0), data.x_train.mean(0), atol=0.05)
    assert torch.allclose(x.std(0), data.x_train.std(0), atol=0.05)


def test_a_conditional_model_with_a_non_label_condition_through_the_cli(tmp_path, genlab_cli):
    from PIL import Image

    with pytest.raises(ArgumentError, match="cannot be trained with condition"):
        train("test-inpaint", "digits", tmp_path / "bad", condition="label")
    run = train("test-inpaint", "digits", tmp_path / "inpaint", steps=3, condition=["source", "mask"])
    assert run.conditions == ("source", "mask")
    image = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    top = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    top[..., :4, :] = True
    out = run.sample(1, {"source": image, "mask": top}, seed=0)
    assert torch.allclose(out[top], image[top], atol=1e-6) and not torch.allclose(out, image)
    with pytest.raises(ArgumentError, match="trained without label"):
        run.sample(1, {"label": torch.tensor([3])})
    # the named command is a thin shell over the same route; a run without low_res refuses `upscale`
    Image.fromarray(((image[0, 0] + 1) * 127.5).byte().numpy()).save(tmp_path / "in.png")
    Image.fromarray(top[0, 0].byte().numpy() * 255).save(tmp_path / "mask.png")
    env_model = ("import sys; sys.path.insert(0, %r); from contract_models import register_test_models; "
                 "register_test_models(); from genlab.cli import main; sys.argv[0] = 'genlab'; main()") % str(REPO_ROOT / "tests")
    cmd = [sys.executable, "-c", env_model]
    done = subprocess.run(cmd + ["inpaint", str(run.path), "--input", "in.png", "--mask", "mask.png", "--out", "o.png"],
                          cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "o.png").exists()
    refused = subprocess.run(cmd + ["upscale", str(run.path), "--input", "in.png"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "takes no input file" in refused.stderr and "Traceback" not in refused.stderr


# ------------------------------------------------------------------ exact resume on every data source
def _sources(tmp_path: Path, corpus: Path) -> dict[str, tuple[str, dict]]:
    from PIL import Image

    folder = tmp_path / "images"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray((torch.rand(6, 6) * 255).byte().numpy()).save(folder / c / f"{i}.png")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{w}\t{w[::-1]}\n" for w in ["abc", "hello", "tensor", "genlab", "model"] * 8))
    series = tmp_path / "series.csv"
    series.write_text("value\n" + "".join(f"{(i % 17) * 0.5}\n" for i in range(400)))
    wav = REPO_ROOT / "tests" / "fixtures" / "sweep-8khz.wav"
    return {
        "in-memory images": ("digits", {}),
        "memory-mapped images": (f"imagefolder:{folder}", {"image_size": 6}),
        "token stream": (f"text:{corpus}", {"block_size": 8}),
        "paired sequences": (f"pairs:{pairs}", {}),
        "two domains": ("domains:digits+digits", {}),
        "series": (f"csv:{series}", {"window": 16}),
        "audio": (f"wav:{wav}", {"window": 256}),
    }


@pytest.mark.parametrize("kind", ["in-memory images", "memory-mapped images", "token stream", "paired sequences",
                                  "two domains", "series", "audio"])
def test_resume_equals_an_uninterrupted_run_on_every_data_source(kind, tmp_path, corpus, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    data, options = _sources(tmp_path, corpus)[kind]
    if kind == "audio" and not Path(data.split(":", 1)[1]).exists():
        pytest.skip("the audio fixture is missing")
    settings = dict(batch_size=4, data_options=options)
    straight = train("test-probe", data, tmp_path / "straight", steps=6, **settings)
    train("test-probe", data, tmp_path / "resumed", steps=3, **settings)
    resumed = genlab.train(resume=tmp_path / "resumed", steps=6, progress=False)
    key = lambda r: (r["step"], r["loss"], r["batch_mean"])
    assert [key(r) for r in straight.metrics()] == [key(r) for r in resumed.metrics()]
    a = ckpt.load(ckpt.resolve(straight.checkpoints), "test-probe")
    b = ckpt.load(ckpt.resolve(resumed.checkpoints), "test-probe")
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    means = [r["batch_mean"] for r in straight.metrics()]
    assert len(set(means)) > 1, "every step drew the same batch"


# ------------------------------------------------------------------ runs that last
def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path):
    base = train("vae", "digits", tmp_path / "base", model_config=tiny_config("vae"))
    tuned = train("vae", "digits", tmp_path / "tuned", steps=0, model_config=tiny_config("vae"), init_from=base.path)
    a = ckpt.load(ckpt.resolve(base.checkpoints), "vae")[1]
    b = ckpt.load(ckpt.resolve(tuned.checkpoints), "vae")[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert Run(tuned.path).info()["init_from"]["path"] == str(base.path.resolve())
    with pytest.raises(GenlabError, match="'vae' run; a 'ddpm' run can only start from a 'ddpm' run"):
        train("ddpm", "digits", tmp_path / "wrong", model_config=tiny_config("ddpm"), init_from=base.path)


def test_a_run_from_before_the_contract_is_migrated_for_sampling_and_refused_for_resuming(tmp_path):
    run = train("vae", "digits", tmp_path / "old", condition="label", model_config=tiny_config("vae"))
    # rewrite it as genlab 0.1 wrote it: no format version, class_conditional in the model config, the
    # KL warm-up counter among the weights, no data order in the trainer state
    raw = yaml.safe_load((run.path / "config.yaml").read_text())
    for key in ("format_version", "conditions", "references", "assets", "init_from"):
        raw.pop(key)
    raw["model_config"]["class_conditional"] = True
    for key in ("conditions", "vocab_size", "extras"):
        raw["data_info"].pop(key)
    (run.path / "config.yaml").write_text(yaml.safe_dump(raw))
    step_dir = ckpt.resolve(run.checkpoints)
    meta, model_state, ema_state, state = ckpt.load(step_dir, "vae")
    state.pop("data_order")
    model_state["updates"] = ema_state["updates"] = torch.tensor(3)
    ckpt.save(run.checkpoints, 3, "vae", model_state, ema_state, state)
    old = Run(run.path)
    assert old.format_version == 1 and old.conditions == ("label",)
    assert old.sample(4, labels=[1, 2, 3, 4], seed=0).shape == (4, 1, 8, 8)
    with pytest.raises(CheckpointError, match="--init-from"):
        genlab.train(resume=run.path, steps=5, progress=False)


def test_a_newer_format_is_refused(tmp_path):
    run = train("vae", "digits", tmp_path / "new", model_config=tiny_config("vae"), steps=1)
    raw = yaml.safe_load((run.path / "config.yaml").read_text())
    raw["format_version"] = 99
    (run.path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(GenlabError, match="newer genlab"):
        Run(run.path)


def test_a_locked_run_refuses_a_second_writer(tmp_path):
    run = train("vae", "digits", tmp_path / "locked", model_config=tiny_config("vae"), steps=1)
    lock_file = run.path / ".lock"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_file.write_text(json.dumps({"pid": other.pid, "host": os.uname().nodename, "started": "now",
                                         "command": "genlab train"}))
        with pytest.raises(RunLockedError, match=str(other.pid)):
            genlab.train(resume=run.path, steps=2, progress=False)
        with pytest.raises(RunLockedError):
            train("vae", "digits", run.path, model_config=tiny_config("vae"), overwrite=True)
        assert (run.path / "config.yaml").exists(), "--overwrite deleted a run in use"
    finally:
        other.kill()
        other.wait()
    # its owner gone, the lock is stale and replaced
    assert genlab.train(resume=run.path, steps=2, progress=False).info()["step"] == 2
    assert not lock_file.exists()


@pytest.mark.parametrize("options, message", [({"batch_size": 0}, "--batch-size must be at least 1"),
                                              ({"lr": -1.0}, "--lr must be positive"),
                                              ({"device": "tpu9"}, "is not a device")])
def test_impossible_settings_are_refused_with_the_setting_named(options, message, tmp_path):
    with pytest.raises(ArgumentError, match=message):
        train("vae", "digits", tmp_path / "bad", model_config=tiny_config("vae"), **options)


def test_a_damaged_config_gives_a_clear_error(tmp_path, genlab_cli):
    run = train("vae", "digits", tmp_path / "damaged", model_config=tiny_config("vae"), steps=1)
    (run.path / "config.yaml").write_text("model: vae\n  data_info: [unclosed\n")
    result = genlab_cli("sample", run.path, "-n", "2")
    assert result.returncode == 2 and "is damaged and cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_refuses_a_changed_batch_size_or_seed(tmp_path):
    run = train("vae", "digits", tmp_path / "order", model_config=tiny_config("vae"), steps=2)
    with pytest.raises(ArgumentError, match="batch_size 16 -> 8 would change the order"):
        genlab.train(resume=run.path, steps=4, batch_size=8, progress=False)
    with pytest.raises(ArgumentError, match="seed 0 -> 5"):
        genlab.train(resume=run.path, steps=4, seed=5, progress=False)


def test_minutes_do_not_count_previews(tmp_path, monkeypatch):
    import time

    from genlab.train.trainer import Trainer

    slow_preview = Trainer.save_preview

    def preview(self, n=64):
        time.sleep(0.4)
        return slow_preview(self, n)

    monkeypatch.setattr(Trainer, "save_preview", preview)
    run = train("vae", "digits", tmp_path / "budget", model_config=tiny_config("vae"), steps=None,
                minutes=0.5 / 60, sample_every=10)
    state = json.loads((run.path / "train_state.json").read_text())
    assert state["overhead_seconds"] >= 0.4 and state["step"] >= 2


# ------------------------------------------------------------------ two processes
DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from contract_models import register_test_models
register_test_models()
import genlab
from genlab.errors import TrainingDiverged
try:
    genlab.train("test-critic", "8gaussians", out={out!r}, steps=4, progress=False, batch_size=8, log_every=1,
                 sample_every=0, checkpoint_every=0, device="cpu")
except TrainingDiverged as e:
    import os, pathlib
    pathlib.Path({tmp!r}, "diverged-rank" + os.environ["RANK"]).write_text(str(e.step))
    sys.exit(3)
"""


@pytest.mark.slow
@pytest.mark.parametrize("poison", [None, "1:2"])
def test_two_processes_with_the_two_phase_model(poison, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(REPO_ROOT / "tests"), out=str(tmp_path / "run"), tmp=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if poison:
        env["GENLAB_TEST_NAN_AT"] = poison  # a NaN on rank 1 only, at step 2
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, env=env, timeout=240)
    if poison is None:
        assert done.returncode == 0, done.stderr[-3000:]
        run = Run(tmp_path / "run")
        assert run.info()["step"] == 4 and run.info()["world_size"] == 2
        assert adam_steps(run, "critic") == 20
    else:  # both processes stop, at the same step, without a hang
        assert done.returncode != 0
        reports = {p.name: p.read_text() for p in tmp_path.glob("diverged-rank*")}
        assert reports == {"diverged-rank0": "2", "diverged-rank1": "2"}, done.stderr[-2000:]
