"""Fixtures shared by the test suite: tiny model configs, fast trainer settings, the CLI, shared MNIST.

Everything here is generic so that any test module (models, training, evaluation...) can use it.
The machine is shared: one thread per process, tiny networks, a few steps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI and torchrun subprocesses
os.environ["GENLAB_COMPILE"] = "0"  # compilation takes seconds to minutes: only tests that ask for it compile
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]

# The smallest settings under which each registered model still trains. A new model must add its
# entry here: the contract test refuses to run a model at its full, slow default size.
TINY_MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "vae": {"latent_dim": 4, "base_channels": 8, "mlp_hidden": 32},
    "beta-vae": {"latent_dim": 4, "base_channels": 8, "capacity_max": 5.0, "capacity_steps": 2},  # capacity path on
    "gan": {"latent_dim": 8, "hidden": 32},
    "dcgan": {"latent_dim": 8, "generator_channels": 8, "discriminator_channels": 8},
    "wgan-gp": {"latent_dim": 8, "generator_channels": 8, "critic_channels": 8, "mlp_hidden": 32, "n_critic": 2},
    "cgan": {"latent_dim": 8, "label_dim": 4, "generator_channels": 8, "discriminator_channels": 8},
    "sagan": {"latent_dim": 8, "generator_channels": 8, "discriminator_channels": 8},  # attention stays on
    "stylegan": {"latent_dim": 8, "w_dim": 8, "mapping_layers": 2, "base_channels": 4},
    # digits 4x4 -> 8x8; one pre-training step, so a 2-step run passes through both stages
    "srgan": {"scale": 2, "channels": 8, "blocks": 2, "discriminator_channels": 8, "discriminator_hidden": 16,
              "pretrain_steps": 1},
    "ddpm": {"base_channels": 8, "num_timesteps": 50, "sampling_steps": 10, "mlp_hidden": 32},
    # its `teacher` names the model of the tiny reference run tiny_config trains
    "progressive-distillation": {"teacher": "ddpm", "teacher_steps": 4, "student_steps": 2, "round_steps": 3},
    "ddgan": {"base_channels": 8, "num_steps": 2, "latent_dim": 4, "mlp_hidden": 32, "discriminator_channels": 8},
    "flow-matching": {"base_channels": 8, "sampling_steps": 4, "mlp_hidden": 32},
    "autoencoder": {"base_channels": 8, "latent_channels": 2, "downsample": 1},
    "hvae": {"channels": 4, "groups_per_scale": 1, "latent_channels": 2, "expand": 2, "kl_warmup_steps": 10},
    "vqvae": {"base_channels": 8, "num_codes": 16, "code_dim": 4, "downsample": 1, "dead_after": 5},
    # its `autoencoder` names the model of the tiny reference run tiny_config trains (a vqvae, not an autoencoder)
    "vqvae-prior": {"autoencoder": "vqvae", "num_codes": 16, "latent_factor": 2, "dim": 16, "depth": 1, "heads": 2},
    # its `autoencoder` run is filled in by tiny_config: a tiny autoencoder trained once per session
    "latent-diffusion": {"base_channels": 8, "num_timesteps": 50, "sampling_steps": 4, "latent_channels": 2,
                         "latent_factor": 2},
    "noise-classifier": {"base_channels": 8},
    "pixelcnn": {"channels": 8, "layers": 2, "first_kernel": 3, "head_channels": 8},
    "wavenet": {"residual_channels": 8, "dilation_channels": 8, "skip_channels": 16, "layers": 3, "bins": 16},
    # a grid of four orders, no seasonal terms: a few fits of a fraction of a second
    "arima": {"max_p": 1, "max_q": 1, "max_P": 0, "max_Q": 0, "season": 0, "context": 32},
    "gpt": {"dim": 16, "depth": 1, "heads": 2},
    "seq2seq": {"dim": 16, "encoder_depth": 1, "decoder_depth": 1, "heads": 2},
    "cyclegan": {"generator_channels": 4, "residual_blocks": 1, "discriminator_channels": 4},
}

# What each kind of data a registry-wide test trains a model on (the first kind the model takes), with
# the data options that keep it tiny
TINY_CORPUS = REPO_ROOT / "tests" / "fixtures" / "tiny-corpus.txt"  # 300 generated sentences, 8 KB
TRAINING_DATA: dict[str, tuple[str, dict[str, Any]]] = {
    "image": ("digits", {}),
    "points": ("8gaussians", {}),
    "tokens": (f"text:{TINY_CORPUS}", {"data_options": {"block_size": 16}}),
    "series": ("co2", {"data_options": {"window": 16}}),  # 2041 windows: room for the resume test's batches of 404
    "audio": (f"wav:{REPO_ROOT / 'tests' / 'fixtures' / 'speech.wav'}", {}),
}


def training_data(model: str) -> tuple[str, dict[str, Any]]:
    """(data name, train options) to train registered `model` on in registry-wide tests."""
    from genlab.batch import SOURCE, X_B
    from genlab.registry import get_model_class

    cls = get_model_class(model)
    if SOURCE in cls.required_inputs and "tokens" in cls.data_kinds:  # a translator needs pairs
        return "number-words", {"data_options": {"max_digits": 2, "pairs": 2000}}
    if X_B in cls.required_inputs:  # an unpaired translator needs two domains
        return "domains:digits+digits", {}
    return TRAINING_DATA[cls.data_kinds[0]]


# Trainer settings for tests: small batches, no warm-up, a metrics line every step, no previews,
# evaluations or periodic checkpoints unless a test asks for them, always the CPU.
TINY_TRAIN_OPTIONS: dict[str, Any] = {
    "batch_size": 16, "warmup_steps": 0, "log_every": 1, "sample_every": 0, "checkpoint_every": 0, "device": "cpu",
    "eval_every": 0,  # GANs evaluate during training by default: seconds a test of something else need not spend
}


def tiny_config(model: str, **changes: Any) -> dict[str, Any]:
    """The tiny config of a registered model as a dict (for `model_config=`), with `changes` applied.

    A model that uses other runs (`references`) gets tiny runs of the models they name, trained once.
    """
    if model not in TINY_MODEL_CONFIGS:
        raise KeyError(f"model '{model}' has no tiny test config: add one to TINY_MODEL_CONFIGS in tests/conftest.py")
    config = {**TINY_MODEL_CONFIGS[model]}
    from genlab.registry import get_model_class

    for name in get_model_class(model).references:
        if name not in changes:
            config[name] = str(tiny_reference_run(config.get(name) or name))  # the model to train, if given
    return {**config, **changes}


_REFERENCE_RUNS: dict[str, Path] = {}


def tiny_reference_run(model: str) -> Path:
    """A tiny run of `model` on digits, trained once per test session (for models that reference one)."""
    if model not in _REFERENCE_RUNS:
        import atexit
        import shutil
        import tempfile

        import genlab

        root = Path(tempfile.mkdtemp(prefix="genlab-reference-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        genlab.train(model, "digits", out=root / model, steps=3, model_config=tiny_config(model), progress=False,
                     **TINY_TRAIN_OPTIONS)
        _REFERENCE_RUNS[model] = root / model
    return _REFERENCE_RUNS[model]


def tiny_set_args(model: str, **changes: Any) -> list[str]:
    """The tiny config as CLI arguments: ["--set", "key=value", ...]."""
    args: list[str] = []
    for key, value in tiny_config(model, **changes).items():
        args += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return args


@pytest.fixture
def tiny_model_config() -> Callable[..., dict[str, Any]]:
    """`tiny_model_config("vae", beta=2.0)` -> the model's tiny config dict."""
    return tiny_config


@pytest.fixture
def tiny_model_set_args() -> Callable[..., list[str]]:
    """`tiny_model_set_args("vae")` -> ["--set", "latent_dim=4", ...] for the CLI."""
    return tiny_set_args


@pytest.fixture
def tiny_train_options() -> dict[str, Any]:
    """A fresh copy of the fast trainer settings (TrainConfig fields)."""
    return dict(TINY_TRAIN_OPTIONS)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A path for a new run directory (not created)."""
    return tmp_path / "run"


@pytest.fixture
def train_tiny(tmp_path: Path) -> Callable[..., Any]:
    """`train_tiny("vae", steps=4, data="digits", out=None, model_config=None, **train_options)` -> Run.

    Trains the model's tiny config with the fast trainer settings (overridable) into a fresh directory.
    """
    import genlab

    counter = iter(range(1_000_000))

    def train(model: str, steps: int = 4, data: str = "digits", out: str | Path | None = None,
              model_config: dict[str, Any] | None = None, **train_options: Any):
        out = Path(out) if out is not None else tmp_path / f"{model}-{data}-{next(counter)}"
        options = {**TINY_TRAIN_OPTIONS, **train_options}
        return genlab.train(model, data, out=out, steps=steps, model_config=model_config or tiny_config(model),
                            progress=False, **options)

    return train


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("genlab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "genlab.cli"]


@pytest.fixture
def genlab_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the installed `genlab` command in a subprocess (cwd: the test's tmp_path) -> CompletedProcess."""

    def run(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        return subprocess.run([*_cli_command(), *map(str, args)], cwd=cwd or tmp_path, env=env,
                              capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture
def genlab_command() -> list[str]:
    """The argv prefix that starts the `genlab` command (for tests that manage the process themselves)."""
    return _cli_command()


def shared_mnist_dir() -> Path:
    """`GENLAB_MNIST_DIR`, else the shared copy beside the repository (../shared/data/mnist)."""
    env = os.environ.get("GENLAB_MNIST_DIR")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data" / "mnist").resolve()


@pytest.fixture
def mnist_dir() -> Path:
    """The directory of the shared MNIST IDX files; skips the test when it holds none."""
    path = shared_mnist_dir()
    if not any(path.glob("*-idx*-ubyte*")):
        pytest.skip(f"no MNIST IDX files in {path} (set GENLAB_MNIST_DIR to a directory holding them)")
    return path
