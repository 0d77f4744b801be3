"""The latent space of runs whose model encodes and decodes: codes to and from .npz, and traversals.

A model offers its latent space with two methods, the ones latent diffusion already uses:
`encode_latent(x) -> z` (a deterministic code, the posterior mean) and `decode_latent(z) -> x` (the
decoder's mean), plus `latent_shape` where it knows it. A model with only `encode(x) -> (mean, ...)` and
`decode(z)` is read through those. Random latents come from the model's `sample_latent(n, generator)`
where its prior is not the standard normal, else from N(0, I), the prior a VAE's KL pulls towards.

The applications on top (interpolate, anomaly, denoise) take any run whose model has these, by what it
can do, never by its name. Latent traversals (Higgins et al. 2017, beta-VAE, Fig. 1) move one latent
coordinate at a time around a base code and decode: what that coordinate controls, if anything.
A run trained with `--condition label` is decoded without its class (the codec passes latents only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ArgumentError, GenlabError

Images = torch.Tensor | str | Path  # (N, C, H, W) in [-1, 1], or an image file, a folder of them or an .npz


@dataclass
class LatentCodec:
    """A model's encoder and decoder as CPU-in, CPU-out functions over batches, without gradients."""

    model: Any
    encoder: Callable[[torch.Tensor], torch.Tensor]
    decoder: Callable[[torch.Tensor], torch.Tensor]
    batch_size: int = 500

    @classmethod
    def of(cls, model: Any, batch_size: int = 500, what: str = "this model") -> "LatentCodec":
        """The codec of `model`; ArgumentError if it cannot both encode and decode."""
        if callable(getattr(model, "encode_latent", None)) and callable(getattr(model, "decode_latent", None)):
            return cls(model, model.encode_latent, model.decode_latent, batch_size)
        if callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None)):
            def first(x):  # encode(x) -> (mean, log-variance): the mean is the code
                out = model.encode(x)
                return out[0] if isinstance(out, (tuple, list)) else out
            return cls(model, first, model.decode, batch_size)
        raise ArgumentError(f"{what} has no latent space to encode images into (no encode_latent/decode_latent); "
                            "use a run of a model that encodes and decodes, e.g. `genlab train vae`")

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one code: the model's `latent_shape`, else that of a code of a blank item."""
        shape = getattr(self.model, "latent_shape", None)
        if shape is None:
            shape = tuple(self.encode(torch.zeros(1, *self.model.data_shape)).shape[1:])
        return tuple(shape)

    def _batched(self, fn, items: torch.Tensor) -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                part = items[start : start + self.batch_size].to(self.device, self.model.dtype)
                out.append(fn(part).float().cpu())
        return torch.cat(out)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *data shape) -> (N, *latent shape) codes."""
        return self._batched(self.encoder, x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, *latent shape) -> (N, *data shape), clamped to [-1, 1] for images."""
        x = self._batched(self.decoder, z)
        return x.clamp(-1, 1) if self.model.output_kind == "image" else x

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Through the code and back: decode(encode(x))."""
        return self.decode(self.encode(x))

    def prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random codes (CPU) from the model's `sample_latent`, else N(0, I); `generator` on the model's device."""
        draw = getattr(self.model, "sample_latent", None)
        with torch.inference_mode():
            if callable(draw):
                return draw(n, generator).float().cpu()
            return torch.randn((n, *self.latent_shape), generator=generator, device=self.device).cpu()

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(seed)


def open_codec(run: Any, checkpoint: str = "latest", device: str | None = None, batch_size: int = 500):
    """(Run, LatentCodec) of a run directory or `genlab.runs.Run`, from its EMA weights."""
    from ..runs import Run

    run = run if isinstance(run, Run) else Run(run)
    model = run.load_model(checkpoint, device=device)
    return run, LatentCodec.of(model, batch_size, what=f"{run.path} (a {run.model_name} run)")


def read_images(images: Images, shape: tuple[int, ...], what: str = "the images") -> torch.Tensor:
    """Images as (N, *shape) float in [-1, 1] from a tensor or a file, folder or .npz; checked against `shape`."""
    from ..conditions import read_items

    x = read_items(images, shape) if isinstance(images, (str, Path)) else torch.as_tensor(images).float()
    if x.dim() == len(shape):
        x = x[None]
    if tuple(x.shape[1:]) != tuple(shape):
        raise ArgumentError(f"{what} are {tuple(x.shape[1:])}; this run's model takes {tuple(shape)}")
    return x


# ---------------------------------------------------------------------------------------------- encode, decode
def encode(run: Any, images: Images, *, checkpoint: str = "latest", device: str | None = None,
           batch_size: int = 500) -> torch.Tensor:
    """Codes of images: `genlab.apps.latents.encode("runs/vae-mnist", "digits.npz")` -> (N, *latent shape).

    Args:
        run: A run directory (or `Run`) whose model encodes and decodes.
        images: (N, C, H, W) in [-1, 1], or an image file, a folder of them or an .npz.

    Raises:
        ArgumentError: The run's model has no latent space, or the images do not fit it.
    """
    _, codec = open_codec(run, checkpoint, device, batch_size)
    return codec.encode(read_images(images, codec.model.data_shape))


def decode(run: Any, latents: torch.Tensor | str | Path, *, checkpoint: str = "latest", device: str | None = None,
           batch_size: int = 500) -> torch.Tensor:
    """Images of codes: `decode(run, "latents.npz")` -> (N, C, H, W) in [-1, 1].

    Args:
        latents: (N, *latent shape), or an .npz written by `save_latents` / `genlab encode`.
    """
    _, codec = open_codec(run, checkpoint, device, batch_size)
    z = load_latents(latents)[0] if isinstance(latents, (str, Path)) else torch.as_tensor(latents).float()
    shape = codec.latent_shape
    if z.dim() == len(shape):
        z = z[None]
    if tuple(z.shape[1:]) != shape:
        raise ArgumentError(f"the latents are {tuple(z.shape[1:])}; this run's codes are {shape}")
    return codec.decode(z)


def save_latents(latents: torch.Tensor, path: str | Path, *, run: Any = None,
                 labels: torch.Tensor | None = None) -> Path:
    """Write codes to an .npz: `latents` (N, *latent shape) float32, and the run they belong to."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ArgumentError(f"latents are written to an .npz file, not '{path}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"latents": latents.detach().float().cpu().numpy()}
    if labels is not None:
        arrays["labels"] = labels.long().cpu().numpy()
    if run is not None:
        arrays["run"], arrays["model"] = np.array(str(getattr(run, "path", run))), np.array(getattr(run, "model_name", ""))
    np.savez(path, **arrays)
    return path


def load_latents(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(latents, labels or None) from an .npz written by `save_latents`."""
    path = Path(path)
    if not path.exists():
        raise ArgumentError(f"no such file: {path}")
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise GenlabError(f"{path} is not a readable .npz file ({e})") from None
    if "latents" not in data:
        raise GenlabError(f"{path} holds {list(data.keys())}, not 'latents'; write latents with `genlab encode`")
    labels = torch.from_numpy(data["labels"]).long() if "labels" in data else None
    return torch.from_numpy(np.asarray(data["latents"], dtype=np.float32)), labels


# ---------------------------------------------------------------------------------------------- traversals
@dataclass
class Traversal:
    """Codes moved along one latent coordinate per row, and their decodings."""

    base: torch.Tensor  # (*latent shape) the code every row starts from
    dims: list[int]  # the coordinate each row moves (an index into the flattened code)
    offsets: torch.Tensor  # (steps,) added to that coordinate, left to right
    latents: torch.Tensor  # (rows, steps, *latent shape)
    images: torch.Tensor  # (rows, steps, *data shape)

    def save(self, path: str | Path) -> Path:
        """A grid: one row per coordinate, one column per offset."""
        from ..imageio import save_grid

        return save_grid(self.images.flatten(0, 1), path, nrow=self.images.shape[1])


def traverse(run: Any, dims: int | list[int] | None = None, *, span: float = 3.0, steps: int = 9,
             input: Images | None = None, checkpoint: str = "latest", device: str | None = None) -> Traversal:
    """Latent traversals: `traverse("runs/vae-mnist", 3).save("traverse.png")`.

    Args:
        run: A run directory (or `Run`) whose model encodes and decodes.
        dims: The coordinate(s) of the flattened code to move, one row each; None: every coordinate.
        span: Offsets run evenly from -span to +span (in prior standard deviations for a N(0, I) prior).
        steps: Offsets per row.
        input: An image whose code is the base (the first one of a file, folder or .npz); None: the zero code.

    Raises:
        ArgumentError: The run's model has no latent space, or a coordinate lies outside its code.
    """
    _, codec = open_codec(run, checkpoint, device)
    shape = codec.latent_shape
    size = int(np.prod(shape))
    if input is None:
        base = torch.zeros(shape)
    else:
        base = codec.encode(read_images(input, codec.model.data_shape, "the --input images")[:1])[0]
    dims = list(range(size)) if dims is None else ([dims] if isinstance(dims, int) else list(dims))
    bad = [d for d in dims if not 0 <= d < size]
    if bad:
        raise ArgumentError(f"--dim {bad[0]}: this run's codes have {size} coordinates (0..{size - 1})")
    if steps < 2:
        raise ArgumentError(f"--steps must be at least 2, got {steps}")
    offsets = torch.linspace(-span, span, steps)
    flat = base.reshape(1, 1, size).repeat(len(dims), steps, 1)  # (rows, steps, size)
    flat[torch.arange(len(dims)), :, torch.tensor(dims)] += offsets
    latents = flat.view(len(dims), steps, *shape)
    images = codec.decode(latents.flatten(0, 1))
    return Traversal(base, dims, offsets, latents, images.view(len(dims), steps, *images.shape[1:]))
