"""Precision (fp32, bf16, fp16 autocast) and compilation: choice, recording, training, sampling, checkpoints."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import load_file

from genlab import precision as precision_module
from genlab.compilation import compiled_for, should_compile
from genlab.errors import ArgumentError
from genlab.nn.attention import SpatialSelfAttention
from genlab.precision import resolve_precision
from genlab.runs import Run
from genlab.train import checkpoint as ckpt

CPU = torch.device("cpu")


# ------------------------------------------------------------------ choosing a precision
@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_hardware(native, expected, monkeypatch):
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: native)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32"


def test_bf16_without_hardware_support_falls_back_on_gpus_and_warns_once(monkeypatch):
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: False)
    monkeypatch.setattr(precision_module, "_warned", set())
    with pytest.warns(UserWarning, match="falling back to fp32"):
        assert resolve_precision("bf16", torch.device("cuda")) == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not at every call
        assert resolve_precision("bf16", torch.device("cuda")) == "fp32"
    with pytest.warns(UserWarning, match="no native bf16"):
        assert resolve_precision("bf16", CPU) == "bf16"  # runs (emulated) when asked for explicitly


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ArgumentError, match="auto, fp32, bf16, fp16"):
        resolve_precision("fp8", CPU)


def test_compile_choice_overrides_the_measured_default(monkeypatch):
    class Model:
        compile_pays_after = {"sample": {"cpu": 100}, "train": {}}

    monkeypatch.delenv("GENLAB_COMPILE", raising=False)
    assert should_compile(None, Model, "sample", CPU, 100) and not should_compile(None, Model, "sample", CPU, 99)
    assert not should_compile(None, Model, "sample", torch.device("cuda"), 10**6)  # never measured there: off
    assert not should_compile(None, Model, "train", CPU, 10**6)
    assert should_compile(True, Model, "train", CPU, 0) and not should_compile(False, Model, "sample", CPU, 10**6)
    monkeypatch.setenv("GENLAB_COMPILE", "0")
    assert not should_compile(None, Model, "sample", CPU, 10**6)


# ------------------------------------------------------------------ training and sampling in each precision
def _conv_output_dtypes(model):
    seen = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    return seen


@pytest.mark.parametrize("name", ["vae", "ddpm"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_each_precision_trains_samples_and_is_recorded(name, precision, train_tiny):
    run = train_tiny(name, steps=6, precision=precision)
    info = run.info()
    assert info["precision"] == precision and info["train"]["precision"] == precision
    assert all(v == v and abs(v) < 1e6 for v in info["last_losses"].values())  # finite
    weights = load_file(str(ckpt.resolve(run.checkpoints, "latest") / "model.safetensors"))
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}  # master weights stay fp32
    model = run.load_model()
    dtypes = _conv_output_dtypes(model)
    report: dict = {}
    x = run.sample(4, seed=0, precision=precision, report=report)
    assert x.dtype == torch.float32 and x.shape[0] == 4 and torch.isfinite(x).all()
    assert report == {"precision": precision, "compiled": False}
    assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}  # the network really ran in it


def test_bf16_training_runs_the_network_in_bf16_and_keeps_losses_fp32(train_tiny, monkeypatch):
    from genlab.models.vae.vae import VAE

    seen: dict[str, torch.dtype] = {}
    original = VAE.training_loss

    def spy(self, batch, phase, step, generator):
        out = original(self, batch, phase, step, generator)
        seen["loss"] = out.loss.dtype
        seen["conv"] = self.encoder(batch["x"][:2]).dtype
        return out

    monkeypatch.setattr(VAE, "training_loss", spy)
    train_tiny("vae", steps=2, precision="bf16")
    assert seen == {"loss": torch.float32, "conv": torch.bfloat16}


@pytest.mark.parametrize("trained, sampled", [("bf16", "fp32"), ("fp32", "bf16")])
def test_a_checkpoint_from_one_precision_samples_in_the_other(trained, sampled, train_tiny):
    run = train_tiny("vae", steps=20, precision=trained)
    same = run.sample(32, seed=3, precision=trained)
    other = Run(run.path).sample(32, seed=3, precision=sampled)
    # the same weights and noise: only rounding differs (bf16 keeps about 3 significant digits)
    assert not torch.equal(same, other)
    assert (same - other).abs().max() < 0.1 and (same - other).abs().mean() < 0.02


def test_fp16_trains_with_a_loss_scaler_that_resumes(train_tiny, tmp_path):
    out = tmp_path / "fp16"
    train_tiny("vae", steps=4, out=out, precision="fp16", checkpoint_every=2)
    state = ckpt.load(ckpt.resolve(Run(out).checkpoints, "latest"), "vae")[3]
    assert state["scalers"]["model"]["scale"] > 0  # the scaler's state travels with the checkpoint
    import genlab

    run = genlab.train(resume=out, steps=6, progress=False)
    assert run.info()["step"] == 6 and run.info()["precision"] == "fp16"


# ------------------------------------------------------------------ compilation, exercised once
def test_compiled_sampling_matches_eager_and_compiles_once(train_tiny):
    run = train_tiny("vae", steps=4, precision="fp32")
    eager = run.sample(10, seed=1, batch_size=4, precision="fp32", compile=False)
    compiled_run = Run(run.path)
    report: dict = {}
    compiled = compiled_run.sample(10, seed=1, batch_size=4, precision="fp32", compile=True, report=report)
    assert report["compiled"] and report["compile_seconds"] > 0
    assert compiled.shape == eager.shape  # the short last batch was padded to the compiled shape, then cut
    assert torch.allclose(compiled[:8], eager[:8], atol=1e-4)
    model = compiled_run.load_model()
    assert compiled_for(model) == "sample"
    again: dict = {}
    compiled_run.sample(4, seed=1, batch_size=4, precision="fp32", report=again)
    assert again["compiled"] and "compile_seconds" not in again  # already compiled: no second compilation


@pytest.mark.slow
def test_compiled_training_trains_and_is_recorded(train_tiny):
    run = train_tiny("vae", steps=3, precision="fp32", compile=True)
    info = run.info()
    assert info["compiled"] and info["compile_seconds"] > 0 and info["step"] == 3


# ------------------------------------------------------------------ the fused attention path
def test_spatial_attention_matches_plain_softmax_attention():
    torch.manual_seed(0)
    layer = SpatialSelfAttention(16, heads=4)
    x = torch.randn(2, 16, 5, 5)
    b, c, h, w = x.shape
    q, k, v = layer.qkv(layer.norm(x)).reshape(b, 3, 4, c // 4, h * w).unbind(1)  # (B, heads, D, HW)
    weights = torch.softmax(q.transpose(-1, -2) @ k / (c // 4) ** 0.5, dim=-1)  # (B, heads, HW, HW)
    y = (weights @ v.transpose(-1, -2)).transpose(-1, -2).reshape(b, c, h, w)
    expected = (x + layer.out(y)).detach()
    assert torch.allclose(layer(x), expected, atol=1e-5)  # with gradients: the plain products
    with torch.no_grad():  # without: SDPA's fused kernels
        assert torch.allclose(layer(x), expected, atol=1e-5)


def test_a_batch_that_runs_out_of_memory_is_halved_until_it_fits(train_tiny, monkeypatch):
    from genlab.sampling import sample_in_batches

    model = train_tiny("vae", steps=2).load_model()
    original = type(model).sample

    def small_memory(self, n, *args, **kwargs):
        if n > 8:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, n, *args, **kwargs)

    monkeypatch.setattr(type(model), "sample", small_memory)
    timings: list = []
    with pytest.warns(UserWarning, match="batches of 5"):
        x = sample_in_batches(model, 20, batch_size=32, timings=timings)  # 20 -> 10 -> 5
    assert x.shape[0] == 20 and [m for m, _ in timings] == [5, 5, 5, 5]


def test_auto_takes_a_models_measured_choice_for_its_device():
    from genlab.precision import resolve_precision

    class Small(torch.nn.Module):
        auto_precision = {"cpu": "fp32"}

    assert resolve_precision("auto", torch.device("cpu"), Small()) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu"), Small()) == "bf16"  # an explicit choice stands
    assert resolve_precision("auto", torch.device("cpu"), torch.nn.Linear(1, 1)) == resolve_precision("auto", torch.device("cpu"))
