"""genlab.models and genlab.schedulers: the contract every registered model meets, then what each one learns.

The contract test runs every model of `genlab.registry` on images (digits), on 2-D points (8gaussians)
and on a series (sunspots), each on the kinds it is built for: loss -> backward -> optimizer groups ->
sample -> save -> load -> same samples. A model without trainable parameters is fitted (`fit(data)`) instead.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch

from genlab.api import data_info
from genlab.config import from_dict
from genlab.data import DataSource, Dataset, load_data
from genlab.errors import GenlabError
from genlab.registry import get_model_class, model_names
from genlab.runs import Run, TrainConfig
from genlab.schedulers import NoiseSchedule, ancestral_sample, ddim_sample
from genlab.schedulers.samplers import ddim_timesteps
from genlab.train.trainer import Trainer

from conftest import TINY_TRAIN_OPTIONS, tiny_config

# every model that samples; models that only serve other runs' sampling (a guiding classifier) have
# their own tests beside the runs they serve
MODELS = [m for m in model_names() if get_model_class(m).can_sample]
DATASETS = ["digits", "8gaussians", "sunspots"]


@functools.lru_cache(maxsize=None)
def dataset(name: str) -> DataSource:
    return load_data(name)


def items(ds: DataSource, n: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor | None]:
    """n items of any data source and their labels (None without): in-memory sets by index, streams by windows."""
    if isinstance(ds, Dataset):
        x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_val, ds.y_val)
        return x[:n], (y[:n] if y is not None else None)
    b = ds.train_batch(0, n, seed=0) if split == "train" else ds.validation(n)
    return b["x"], b.get("label")


def home_data(model: str) -> str | None:
    """The first of DATASETS of a kind the model is built for (None: none of them)."""
    kinds = get_model_class(model).data_kinds
    return next((d for d in DATASETS if dataset(d).spec.kind in kinds), None)


def build(model: str, data: str = "digits", seed: int = 0, conditions: tuple[str, ...] = (), **changes):
    """(a freshly initialised tiny model, its dataset); the same seed gives the same weights.

    Skips where the model is not built for this kind of data; attaches the runs it references; fits a
    model that has no trainable parameters, as the trainer would.
    """
    from genlab.runs import load_reference, reference_record

    ds = dataset(data)
    cls = get_model_class(model)
    if ds.spec.kind not in cls.data_kinds:
        pytest.skip(f"{model} is built for {'/'.join(cls.data_kinds)} data, not {ds.spec.kind}")
    torch.manual_seed(seed)
    config = from_dict(cls.config_class, tiny_config(model, **changes), model)
    net = cls(config, ds.spec, conditions)
    for name in cls.references:
        net.attach_reference(name, load_reference(reference_record(getattr(config, name)), Path(".")))
    if not net.trainable:
        net.fit(ds)
    return net, ds


def groups(model) -> dict[str, list]:
    """Optimizer name -> its parameters, in the order the trainer steps them."""
    return {spec.name: spec.parameters() for spec in model.optimizers()}


def batch(x, y=None) -> dict:
    return {"x": x} if y is None else {"x": x, "label": y}


def make_trainer(model_name: str, model, ds: Dataset, out, **options) -> Trainer:
    """A Trainer over an already built model (the path `genlab.train` takes), fast settings."""
    from genlab.runs import reference_record

    tcfg = TrainConfig(data=ds.name, **{**TINY_TRAIN_OPTIONS, **options}).resolved(type(model).train_defaults)
    references = {name: reference_record(getattr(model.config, name)) for name in type(model).references}
    run = Run.create(out, model_name, model.config, tcfg, data_info(ds), conditions=model.conditions,
                     references=references, assets=ds.assets())
    return Trainer(run, model, ds, progress=False)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def is_conditional_capable(model: str) -> bool:
    return "label" in get_model_class(model).accepted_conditions


# ------------------------------------------------------------------ the contract
def test_tiny_configs_cover_the_registry():
    for name in MODELS:
        assert tiny_config(name), f"{name} has an empty tiny config"


@pytest.mark.parametrize("data", DATASETS)
@pytest.mark.parametrize("model_name", MODELS)
class TestContract:
    def test_optimizer_groups_cover_every_parameter_once(self, model_name, data):
        model, _ = build(model_name, data)
        named = groups(model)
        if not model.trainable:  # fitted by fit(data): nothing for an optimizer
            assert not named and not list(model.parameters())
            return
        assert named and all(isinstance(k, str) and v for k, v in named.items())
        grouped = [id(p) for params in named.values() for p in params]
        assert len(grouped) == len(set(grouped)), "a parameter sits in two optimizer groups"
        assert set(grouped) == {id(p) for p in model.parameters()}, "a parameter is in no optimizer group"

    def test_loss_backward_reaches_every_parameter_of_its_group(self, model_name, data):
        model, ds = build(model_name, data)
        model.train()
        x, y = items(ds, 8)
        for group, params in groups(model).items():
            model.zero_grad(set_to_none=True)
            out = model.training_loss(batch(x, y), group, 0, gen(1))
            assert out.loss.dim() == 0 and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
            # logs stay tensors (no host sync in the training loop), detached scalars
            assert out.logs and all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
                                    and math.isfinite(float(v)) for v in out.logs.values())
            out.loss.backward()
            unused = [i for i, p in enumerate(params) if p.grad is None]
            assert not unused, f"group '{group}': parameters {unused} get no gradient (DDP would hang)"
            assert all(torch.isfinite(p.grad).all() for p in params)

    def test_loss_is_reproducible_from_the_generator(self, model_name, data):
        model, ds = build(model_name, data)
        x, y = items(ds, 8)
        if not groups(model):
            pytest.skip(f"{model_name} is fitted by fit(data): it has no training loss")
        group = next(iter(groups(model)))

        def loss():  # as the trainer seeds each step: its generator, and the global RNG for dropout
            torch.manual_seed(3)
            return model.training_loss(batch(x, y), group, 0, gen(3)).loss

        with torch.no_grad():
            assert torch.equal(loss(), loss())

    def test_sample_shape_and_range(self, model_name, data):
        model, ds = build(model_name, data)
        model.eval()
        samples = model.sample(5, generator=gen(0))
        assert samples.shape == (5, *ds.shape) and samples.dtype == torch.float32
        assert torch.isfinite(samples).all()
        if model.is_image:
            assert samples.min() >= -1.0 and samples.max() <= 1.0
        assert torch.equal(model.sample(5, generator=gen(0)), samples)
        assert not torch.equal(model.sample(5, generator=gen(1)), samples)

    def test_save_load_through_a_run_gives_identical_samples(self, model_name, data, tmp_path):
        model, ds = build(model_name, data)
        trainer = make_trainer(model_name, model, ds, tmp_path / "run")
        trainer.fit(steps=2)
        expected = trainer.ema.model.sample(6, generator=gen(7))
        run = Run(tmp_path / "run")
        got = run.sample(6, seed=7, precision="fp32")  # model.sample alone runs in fp32
        assert torch.equal(got, expected)  # channels-last models train in the layout they are loaded in
        assert torch.equal(run.sample(6, seed=7, batch_size=4)[:4], run.sample(4, seed=7))
        loaded = run.load_model(ema=False)
        assert loaded.checkpoint_step == (2 if model.trainable else 1) and not loaded.training  # fitted once
        for (name, a), (_, b) in zip(trainer.model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), name


@pytest.mark.parametrize("model_name, channels_last", [("cgan", True), ("stylegan", True), ("vae", False)])
def test_a_model_that_prefers_channels_last_trains_in_it_and_others_stay_contiguous(model_name, channels_last,
                                                                                      tmp_path):
    model, ds = build(model_name, conditions=("label",) if model_name == "cgan" else ())
    assert model.prefers_channels_last == channels_last
    trainer = make_trainer(model_name, model, ds, tmp_path / "run")
    trainer.fit(steps=1)
    for net in (trainer.model, trainer.ema.model):
        # no 1x1 kernels or single channels: those are contiguous in both layouts
        kernels = [p for p in net.parameters() if p.dim() == 4 and min(p.shape) > 1]
        assert kernels
        assert all(p.is_contiguous(memory_format=torch.channels_last) == channels_last for p in kernels)


@pytest.mark.parametrize("model_name", MODELS)
def test_likelihood_contract(model_name):
    model, ds = build(model_name, "digits")
    model.eval()
    x = ds.x_val[:4]
    if model.likelihood == "none":
        with pytest.raises(TypeError, match="no likelihood"):
            model.bits_per_dim(batch(x))
        return
    bpd = model.bits_per_dim(batch(x), generator=gen(0))
    assert bpd.shape == (4,) and torch.isfinite(bpd).all() and (bpd > 0).all()
    points_model, points = build(model_name, "8gaussians")
    with pytest.raises(TypeError, match="images"):
        points_model.bits_per_dim(batch(points.x_val[:4]))


# ------------------------------------------------------------------ each model learns
SINGLE_LOSS_MODELS = [m for m in MODELS if home_data(m) and list(groups(build(m, home_data(m))[0])) == ["model"]]
LEARN_STEPS = {"vae": 150, "ddpm": 40, "wavenet": 150}


@pytest.mark.parametrize("model_name", SINGLE_LOSS_MODELS)
def test_training_lowers_heldout_loss_and_bits_per_dim(model_name, tmp_path):
    model, ds = build(model_name, home_data(model_name))
    held_out = items(ds, 64, "val")[0]

    def heldout_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model.training_loss(batch(held_out), "model", 10_000, gen(11)).loss.item()

    def bits() -> float:
        model.eval()
        return model.bits_per_dim(batch(held_out), generator=gen(12)).mean().item()

    loss0 = heldout_loss()
    bpd0 = bits() if model.likelihood != "none" else None
    make_trainer(model_name, model, ds, tmp_path / "run", batch_size=32).fit(steps=LEARN_STEPS.get(model_name, 80))
    loss1 = heldout_loss()
    assert loss1 < 0.85 * loss0, f"held-out loss {loss0:.4f} -> {loss1:.4f}"
    if bpd0 is not None:
        bpd1 = bits()
        assert 0 < bpd1 < bpd0, f"bits/dim {bpd0:.3f} -> {bpd1:.3f}"


def _sgd_steps(model, group: str, steps: int, x_for_step, lr: float = 2e-3) -> None:
    opt = torch.optim.Adam(groups(model)[group], lr=lr, betas=(0.5, 0.999))
    model.train()
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        model.training_loss(batch(x_for_step(i)), group, i, gen(100 + i)).loss.backward()
        opt.step()


def test_gan_discriminator_learns_to_separate_real_from_fake():
    model, ds = build("dcgan", "digits")
    real = ds.x_val[:64]

    def d_logs():
        with torch.no_grad():
            return {k: float(v) for k, v in model.training_loss(batch(real), "discriminator", 0, gen(5)).logs.items()}

    before = d_logs()
    assert abs(before["d_loss"] - math.log(4)) < 0.1  # an untrained critic cannot tell them apart
    batches = lambda i: ds.x_train[torch.randint(0, len(ds.x_train), (64,), generator=gen(i))]
    _sgd_steps(model, "discriminator", 30, batches)
    after = d_logs()
    assert after["d_loss"] < 0.5 * before["d_loss"]
    assert after["d_real"] > 1.4 and after["d_fake"] < -1.4  # mean logits: sigmoid 0.8 and 0.2


def test_gan_generator_learns_to_fool_a_fixed_discriminator():
    model, ds = build("dcgan", "digits")
    real = ds.x_val[:64]
    _sgd_steps(model, "discriminator", 30, lambda i: real)

    def logs(group):
        with torch.no_grad():
            return {k: float(v) for k, v in model.training_loss(batch(real), group, 0, gen(5)).logs.items()}

    d_fake_before, g_before = logs("discriminator")["d_fake"], logs("generator")["g_loss"]
    discriminator = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    _sgd_steps(model, "generator", 30, lambda i: real)
    assert all(torch.equal(v, model.discriminator.state_dict()[k]) for k, v in discriminator.items() if "running" not in k)
    assert logs("generator")["g_loss"] < 0.5 * g_before
    assert logs("discriminator")["d_fake"] > d_fake_before + 0.3


def test_gan_samples_move_toward_the_data(tmp_path):
    from genlab.data.toy import eight_gaussians_centers

    model, ds = build("gan", "8gaussians")
    radius = float(torch.tensor(eight_gaussians_centers()).norm(dim=1)[0])

    def radial_error(net) -> float:
        x = net.sample(1000, generator=gen(3))
        return (x.norm(dim=1) - radius).abs().mean().item()

    before = radial_error(model)
    trainer = make_trainer("gan", model, ds, tmp_path / "run", batch_size=32, lr=1e-3)
    trainer.fit(steps=200)
    after = radial_error(trainer.ema.model)
    assert after < 0.75 * before, f"mean distance to the circle of modes {before:.3f} -> {after:.3f}"


def test_a_packed_discriminator_tells_duplicated_pairs_from_real_ones_and_an_unpacked_one_cannot():
    # PacGAN's point: "fake" pairs of two copies of one real point have the real marginal, so one item at a
    # time shows nothing; a discriminator that sees the pair sees the missing diversity
    def separation(pack: int) -> float:
        model, ds = build("gan", "8gaussians", pack=pack, dropout=0.0)
        real = ds.x_train[:512]
        opt = torch.optim.Adam(model.discriminator.parameters(), lr=2e-3)
        for i in range(150):
            x = ds.x_train[torch.randint(0, len(ds.x_train), (256,), generator=gen(i))]
            dup = x[:128].repeat_interleave(2, dim=0)  # consecutive items are one pack
            logits = torch.cat([model.discriminate(x, {}), model.discriminate(dup, {})])
            target = torch.cat([torch.ones(len(logits) // 2, 1), torch.zeros(len(logits) // 2, 1)])
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
            opt.step()
        with torch.no_grad():
            return (model.discriminate(real, {}).mean() - model.discriminate(real[:256].repeat_interleave(2, 0), {}).mean()).item()

    assert separation(2) > 2.0  # mean logit gap between real and duplicated pairs
    assert abs(separation(1)) < 0.5
    model, ds = build("gan", "8gaussians", pack=2)
    assert model.discriminate(ds.x_train[:64], {}).shape == (32, 1)
    with pytest.raises(GenlabError, match="multiple of pack=2"):
        model.discriminate(ds.x_train[:63], {})
    with pytest.raises(GenlabError, match="at least 1"):
        build("gan", "8gaussians", pack=0)


# ------------------------------------------------------------------ class labels
@pytest.mark.parametrize("model_name", MODELS)
def test_sampling_with_wrong_labels_raises_a_clear_error(model_name, tmp_path):
    conditional = is_conditional_capable(model_name)
    model, ds = build(model_name, "digits", conditions=("label",) if conditional else ())
    model.eval()
    if not conditional:
        with pytest.raises(ValueError, match="trained without label"):
            model.sample(4, {"label": torch.tensor([0, 1, 2, 3])}, generator=gen(0))
        return
    with pytest.raises(ValueError, match="'label' holds 3 items for 4 samples"):
        model.sample(4, {"label": torch.tensor([0, 1, 2])}, generator=gen(0))
    for bad in ([0, 1, 2, 10], [-1, 0, 1, 2]):
        with pytest.raises(ValueError, match=r"class labels must lie in \[0, 10\)"):
            model.sample(4, {"label": torch.tensor(bad)}, generator=gen(0))
    # through a Run, as `genlab sample --labels` does; a few steps at full learning rate, so that no
    # zero-initialised layer (the UNet's output and residual convolutions) still blocks the label embedding
    make_trainer(model_name, model, ds, tmp_path / "run", warmup_steps=0, lr=1e-2).fit(steps=3)
    run = Run(tmp_path / "run")
    with pytest.raises(GenlabError, match="holds 3 items for 4 samples"):
        run.sample(4, labels=[0, 1, 2])
    nines, zeros = run.sample(4, labels=[9, 9, 9, 9]), run.sample(4, labels=[0, 0, 0, 0])
    assert nines.shape == (4, *ds.shape) and not torch.equal(nines, zeros), "the labels are ignored"


@pytest.mark.parametrize("model_name", [m for m in MODELS if is_conditional_capable(m)
                                        and "label" not in get_model_class(m).required_inputs])  # cgan: always labelled
def test_unconditional_model_refuses_labels(model_name):
    model, _ = build(model_name, "digits")  # digits has 10 classes nonetheless
    model.eval()
    with pytest.raises(ValueError, match="trained without label"):
        model.sample(2, {"label": torch.tensor([3, 3])}, generator=gen(0))


def test_classifier_free_guidance_changes_conditional_ddpm_samples():
    model, ds = build("ddpm", "digits", conditions=("label",))
    model.eval()
    labels = {"label": torch.arange(4)}
    plain = model.sample(4, labels, generator=gen(0), sampler="ddim", steps=5)
    guided = model.sample(4, labels, generator=gen(0), sampler="ddim", steps=5, guidance_scale=3.0)
    assert guided.shape == plain.shape == (4, *ds.shape)
    assert torch.equal(plain, model.sample(4, labels, generator=gen(0), sampler="ddim", steps=5))


# ------------------------------------------------------------------ diffusion: schedules and samplers
@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [10, 50, 1000])
def test_noise_schedule_properties(kind, steps):
    s = NoiseSchedule(steps, kind)
    ab = s.alpha_bars
    assert ab.shape == (steps,) and ab.dtype == torch.float64
    assert (ab > 0).all() and (ab < 1).all()
    assert (ab[1:] < ab[:-1]).all(), "alpha_bar must decrease strictly"
    assert (s.betas > 0).all() and (s.betas < 1).all()
    assert torch.allclose(ab, torch.cumprod(1 - s.betas, 0))
    assert ab[0] > 0.9 and ab[-1] < 0.05  # from nearly clean to nearly pure noise
    t = torch.arange(steps)
    snr = s.snr(t)
    assert snr.dtype == torch.float32 and (snr[1:] < snr[:-1]).all()
    x0, noise = torch.ones(steps, 3), torch.zeros(steps, 3)
    assert torch.allclose(s.add_noise(x0, noise, t)[:, 0], ab.sqrt().float())
    assert torch.allclose(s.add_noise(torch.zeros(steps, 3), torch.ones(steps, 3), t)[:, 0], (1 - ab).sqrt().float())


def test_noise_schedule_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        NoiseSchedule(10, "quadratic")


class CountingDenoiser:
    """A fixed, network-free noise predictor that records the timesteps it is called at."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],) and (t == t[0]).all()
        self.calls.append(int(t[0]))
        return 0.3 * x + 0.01 * t.float().view(-1, *([1] * (x.dim() - 1)))


@pytest.mark.parametrize("num_steps, steps", [(50, 1), (50, 7), (50, 50), (1000, 50), (1000, 999)])
def test_ddim_timesteps(num_steps, steps):
    times = ddim_timesteps(num_steps, steps)
    assert len(times) == steps and len(set(times)) == steps
    assert times == sorted(times) and times[-1] == num_steps - 1 and times[0] >= 0


def test_ancestral_sampler_visits_every_timestep_once():
    schedule = NoiseSchedule(20)
    denoiser = CountingDenoiser()
    x = ancestral_sample(denoiser, schedule, (3, 1, 4, 4), generator=gen(0))
    assert x.shape == (3, 1, 4, 4) and torch.isfinite(x).all()
    assert denoiser.calls == list(reversed(range(20)))
    assert x.abs().max() <= 1.0  # the last step returns the clipped x0 prediction


def test_ddim_sampler_calls_the_network_steps_times():
    schedule = NoiseSchedule(50)
    denoiser = CountingDenoiser()
    x = ddim_sample(denoiser, schedule, (2, 2), steps=7, generator=gen(0))
    assert x.shape == (2, 2)
    assert denoiser.calls == ddim_timesteps(50, 7)[::-1]


@pytest.mark.parametrize("bad", [0, -3, 51])
def test_ddim_step_count_is_validated(bad):
    with pytest.raises(ValueError, match=r"DDIM steps must be between 1 and 50"):
        ddim_sample(CountingDenoiser(), NoiseSchedule(50), (2, 2), steps=bad, generator=gen(0))
    model, _ = build("ddpm", "8gaussians")
    with pytest.raises(ValueError, match=r"between 1 and 50"):
        model.sample(2, sampler="ddim", steps=bad, generator=gen(0))


def test_ddpm_sampler_options_are_validated():
    model, _ = build("ddpm", "8gaussians")
    with pytest.raises(ValueError, match="the ddpm sampler always takes 50 steps"):
        model.sample(2, sampler="ddpm", steps=10, generator=gen(0))
    with pytest.raises(ValueError, match=r"unknown sampler 'plms'; choose from ddpm, ddim"):
        model.sample(2, sampler="plms", generator=gen(0))


def test_ddim_with_eta_zero_is_deterministic_given_the_start_noise():
    schedule, shape = NoiseSchedule(50), (4, 1, 4, 4)
    g = gen(3)
    a = ddim_sample(CountingDenoiser(), schedule, shape, steps=10, eta=0.0, generator=g)
    # eta = 0 draws the starting noise and nothing else
    assert torch.equal(g.get_state(), (lambda r: (torch.randn(shape, generator=r), r.get_state())[1])(gen(3)))
    assert torch.equal(a, ddim_sample(CountingDenoiser(), schedule, shape, steps=10, eta=0.0, generator=gen(3)))
    assert not torch.equal(a, ddim_sample(CountingDenoiser(), schedule, shape, steps=10, eta=0.0, generator=gen(4)))
    noisy = ddim_sample(CountingDenoiser(), schedule, shape, steps=10, eta=1.0, generator=gen(3))
    assert not torch.equal(a, noisy)


def test_ddim_with_eta_one_and_every_step_is_the_ancestral_sampler():
    """Song et al. 2021: DDIM with eta = 1 over all T steps is DDPM; with the same draws, the same samples."""
    schedule, shape = NoiseSchedule(30, "linear"), (5, 3)
    ddpm = ancestral_sample(CountingDenoiser(), schedule, shape, generator=gen(9), clip=None)
    ddim = ddim_sample(CountingDenoiser(), schedule, shape, steps=30, eta=1.0, generator=gen(9), clip=None)
    assert torch.allclose(ddpm, ddim, atol=1e-5), (ddpm - ddim).abs().max()


@pytest.mark.parametrize("data", DATASETS)
def test_ddpm_model_samplers_shapes(data):
    model, ds = build("ddpm", data)
    model.eval()
    assert model.sample_options() == {"sampler": "dpm++", "steps": 10}  # the tiny config's sampling_steps
    assert model.sample(3, generator=gen(0)).shape == (3, *ds.shape)
    assert model.sample(3, generator=gen(0), sampler="ddpm").shape == (3, *ds.shape)  # the 50-step chain
    ddim = model.sample(3, generator=gen(0), sampler="ddim", steps=4)
    assert ddim.shape == (3, *ds.shape)
    assert torch.equal(ddim, model.sample(3, generator=gen(0), sampler="ddim", steps=4))
    assert not torch.equal(ddim, model.sample(3, generator=gen(0), sampler="ddim", steps=4, eta=1.0))
