"""The contract every genlab model meets, whatever its family.

A model
- is built from its config dataclass, the `DataSpec` of its data and the conditions the run trains it
  with (`--condition label`), out of those it accepts (`accepted_conditions`);
- describes its optimisation: `optimizers()` (kind, parameter groups, learning-rate scales, schedule)
  and `phases()` (which optimizer, repeats, every how many steps, fresh batches). The trainer carries
  these out without knowing what a GAN is;
- computes the loss of one phase from a batch (`training_loss(batch, phase, step, generator)`), drawing
  all randomness from `generator` so a resumed run repeats the same draws; it sees the step;
- names the modules its EMA averages (`ema_modules`: a GAN's generator only);
- samples n items given optional conditions (`sample(n, conditions, generator, **options)`) and says
  what it produces (`output_kind`), its default and preview sampling options, and which conditions to
  evaluate it under;
- where it has one, gives bits per dimension (`bits_per_dim`) and says whether it is exact or a bound;
- may use other runs (`references`: config fields naming a run), loaded frozen and kept out of its
  parameters, optimizers, EMA and checkpoint;
- with no trainable parameters at all, is fitted by `fit(data)` and still gets a run and a checkpoint.
`forward` stays a plain network call.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..batch import CONDITIONS, LABEL, Batch
from ..data.base import DataSpec
from ..errors import ArgumentError
from ..train.optim import OptimizerSpec, Phase

OutputKind = Literal["image", "points", "tokens", "series", "audio"]


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar to backpropagate
    # detached scalar tensors for metrics.jsonl; the trainer reads them to the host every log_every steps
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


class GenerativeModel(nn.Module, abc.ABC):
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_class: ClassVar[type]
    # Trainer settings this model trains well with unless the user says otherwise (lr, batch_size, betas...).
    train_defaults: ClassVar[dict[str, Any]] = {}
    likelihood: ClassVar[Literal["exact", "bound", "none"]] = "none"
    # conditions a run may train it with (`--condition NAME`); see genlab.batch
    accepted_conditions: ClassVar[tuple[str, ...]] = ()
    # batch entries it cannot train without (a second domain, a source sentence); checked against the data
    required_inputs: ClassVar[tuple[str, ...]] = ()
    # conditions it takes at sampling whatever it was trained with (a translator's source image)
    sampling_inputs: ClassVar[tuple[str, ...]] = ()
    # data kinds it can be built for
    data_kinds: ClassVar[tuple[str, ...]] = ("image", "points")
    # config fields that name another run (its path); see genlab.runs.references
    references: ClassVar[tuple[str, ...]] = ()
    # when torch.compile pays for its compile time, per device type, as measured by benchmarks/speed.py:
    # "sample": from this many network calls in one sampling job; "train": from this many minutes of
    # training (a --steps budget never compiles by default). Unlisted: not compiled unless asked.
    compile_pays_after: ClassVar[dict[str, dict[str, int]]] = {"train": {}, "sample": {}}
    # what --precision auto means for this model, per device type, where measurement overrules the
    # hardware rule (genlab.precision); unlisted: bf16 where the hardware has it
    auto_precision: ClassVar[dict[str, str]] = {}
    # convolutional networks that train and sample faster with channels-last tensors (oneDNN's layout): the
    # trainer and Run.load_model put them in it
    prefers_channels_last: ClassVar[bool] = False
    # False for a model that only serves other runs at their sampling (a guiding classifier): no sample
    # grids while it trains, and `genlab sample` / `genlab eval` on its run say what to do instead
    can_sample: ClassVar[bool] = True
    # adversarial models: the trainer watches the live model's samples for collapse (genlab.train.monitor)
    watch_collapse: ClassVar[bool] = False
    # sampling options that name another run (a guiding classifier): `Run.sample` loads that run's model
    # and passes the model in the option's place
    run_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, spec: DataSpec, conditions: tuple[str, ...] = ()):
        super().__init__()
        self.config = config
        self.spec = spec
        always = tuple(c for c in self.required_inputs + self.sampling_inputs if c in CONDITIONS)
        unknown = [c for c in conditions if c not in self.accepted_conditions + always]
        if unknown:
            accepted = ", ".join(self.accepted_conditions) or "none"
            raise ArgumentError(f"{type(self).__name__} cannot be trained with condition(s) {unknown}; "
                                f"it accepts: {accepted}")
        if LABEL in conditions and not spec.num_classes:
            raise ArgumentError("--condition label needs labelled data; this data has no classes")
        if spec.kind not in self.data_kinds:
            raise ArgumentError(f"{type(self).__name__} is built for {'/'.join(self.data_kinds)} data, "
                                f"not {spec.kind}")
        self.conditions = tuple(dict.fromkeys(tuple(conditions) + always))
        self._referenced: dict[str, nn.Module] = {}  # outside the module tree: no state_dict, no parameters

    # ------------------------------------------------------------------ what the data looks like
    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.spec.shape)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def is_image(self) -> bool:
        return self.spec.kind == "image"

    @property
    def low_res_size(self) -> int | None:
        """The side of the low-resolution images a run trained with `low_res` takes (super-resolution)."""
        size = self.spec.extras.get("low_res_size")
        return int(size) if size else None

    @property
    def output_kind(self) -> OutputKind:
        """What `sample` returns; picks the writer and the measures."""
        return self.spec.kind

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for t in self.parameters():
            return t.dtype
        return torch.float32

    # ------------------------------------------------------------------ optimisation
    def optimizers(self) -> list[OptimizerSpec]:
        """The optimizers the trainer builds; by default one over every trainable parameter."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [OptimizerSpec.over("model", params)] if params else []

    def phases(self) -> list[Phase]:
        """The parts of one training step, in order; by default one per optimizer."""
        return [Phase(spec.name) for spec in self.optimizers()]

    def ema_modules(self) -> list[str] | None:
        """Names of the submodules the EMA averages; None: the whole model."""
        return None

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    @abc.abstractmethod
    def training_loss(self, batch: Batch, phase: str, step: int, generator: torch.Generator) -> LossOutput:
        """The loss of `phase` on `batch` at training step `step`."""

    def health(self, logs: dict[str, float]) -> str | None:
        """What is wrong with training, read from this model's logged means (a discriminator that wins
        outright), or None. The trainer warns, and with --on-collapse acts when it persists."""
        return None

    def fit(self, data) -> dict[str, Any]:
        """Fit a model without trainable parameters on a DataSource; returns numbers to log."""
        raise TypeError(f"{type(self).__name__} is trained by gradient steps, not fitted")

    # ------------------------------------------------------------------ sampling
    @abc.abstractmethod
    def sample(self, n: int, conditions: Batch | None = None, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        """n samples (n, *item shape) in the data's range, given conditions for the conditions it has."""

    def sample_options(self, **given: Any) -> dict[str, Any]:
        """The options `sample` will use given `given` (None = default): recorded with every evaluation."""
        return {k: v for k, v in given.items() if v is not None}

    def sampling_presets(self) -> dict[str, dict[str, Any]]:
        """Named sampling settings worth showing side by side (the demo times each)."""
        return {"one pass": {}}

    def preview_options(self) -> dict[str, Any]:
        """Cheap sampling options for grids and evaluation during training."""
        return self.sample_options()

    def network_calls(self, **options: Any) -> int:
        """Network evaluations one `sample` call makes with these options (a diffusion sampler's steps)."""
        return 1

    def compile_targets(self) -> list[nn.Module]:
        """The networks `--compile` compiles: by default every direct submodule with parameters."""
        return [m for m in self.children() if any(True for _ in m.parameters())]

    def evaluation_conditions(self, n: int, real: Batch | None = None, **options: Any) -> Batch | None:
        """Conditions to sample n items under for evaluation (with these sampling options): every class
        equally for label models. `real`: held-out items of the data, for conditions only real data can
        give (a super-resolution run's low-resolution inputs)."""
        if LABEL in self.conditions:
            return {LABEL: torch.arange(n) % self.num_classes}
        return None

    def bits_per_dim(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative log-likelihood per dimension in bits, per item (B,); see `likelihood` for exact vs bound."""
        raise TypeError(f"{type(self).__name__} has no likelihood (likelihood='none')")

    # ------------------------------------------------------------------ helpers for subclasses
    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """Standard normal noise on this model's device and dtype, from `generator`."""
        return torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)

    def check_conditions(self, n: int, conditions: Batch | None) -> Batch:
        """Conditions on this model's device, checked against what it was trained with."""
        conditions = dict(conditions or {})
        extra = [k for k in conditions if k not in self.conditions and k not in _companions(self.conditions)]
        if extra:
            had = ", ".join(self.conditions) or "none"
            raise ArgumentError(f"this {type(self).__name__} run was trained without {', '.join(extra)} "
                                f"(its conditions: {had}); sample without it, or train with --condition {extra[0]}")
        out = {}
        for key, value in conditions.items():
            value = torch.as_tensor(value, device=self.device)
            if len(value) != n:
                raise ArgumentError(f"'{key}' holds {len(value)} items for {n} samples; give one per sample")
            out[key] = value
        if LABEL in out:
            out[LABEL] = self.checked_labels(out[LABEL])
        return out

    def checked_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Class labels as a flat long tensor on this model's device, refused outside [0, num_classes)."""
        labels = torch.as_tensor(labels, device=self.device).long().reshape(-1)
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ArgumentError(f"class labels must lie in [0, {self.num_classes}), got {labels.tolist()[:8]}...")
        return labels

    # ------------------------------------------------------------------ other runs
    def attach_reference(self, name: str, model: nn.Module) -> None:
        """Hand over the frozen model of the run that config field `name` points to."""
        model.eval().requires_grad_(False)
        self._referenced[name] = model.to(self.device)

    def referenced(self, name: str) -> nn.Module:
        if name not in self._referenced:
            raise ArgumentError(f"{type(self).__name__} needs the run named by its '{name}' setting; "
                                f"give it with --set {name}=RUN_DIR")
        return self._referenced[name]

    def _apply(self, fn, *args, **kwargs):  # .to(device) moves referenced runs along
        out = super()._apply(fn, *args, **kwargs)
        for m in self._referenced.values():
            m._apply(fn, *args, **kwargs)
        return out

    @classmethod
    def migrate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A saved run's model config -> this version's fields (default: unchanged)."""
        return config

    @classmethod
    def migrate_state_dict(cls, state: dict[str, torch.Tensor], format_version: int) -> dict[str, torch.Tensor]:
        """Weights written by an older run format -> this version's names (default: unchanged)."""
        return state


def _companions(conditions: tuple[str, ...]) -> set[str]:
    from ..batch import COMPANIONS

    return {COMPANIONS[c] for c in conditions if c in COMPANIONS}
