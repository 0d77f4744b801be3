"""Image completion: keep the given part of images and let a run generate the rest (`genlab complete`).

The known part is the top `rows` rows (or the top half), the part an autoregressive model in raster
order can condition everything else on; any mask works too (white where the input is kept). This is
the sampling route of `genlab sample --input IMAGE --mask FILE`: the images go in as the `source`
condition and the known pixels as `mask`, so every run whose model takes both at sampling completes
(pixelcnn draws the rest pixel by pixel in raster order; a diffusion run inpaints with RePaint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..batch import LABEL, MASK, SOURCE
from ..errors import ArgumentError

KEEP = ("top-half",)


@dataclass
class Completion:
    original: torch.Tensor  # (N, C, H, W) the input images, in [-1, 1]
    mask: torch.Tensor  # (N, 1, H, W) bool, True where the input is kept
    completions: torch.Tensor  # (N, k, C, H, W) k completions of each input

    @property
    def kept(self) -> torch.Tensor:
        """The inputs with what was generated shown mid-grey: what each completion was given."""
        return torch.where(self.mask, self.original, torch.zeros_like(self.original))

    def grid_rows(self) -> torch.Tensor:
        """(N * (2 + k), C, H, W): per input, the original, the kept part, then its completions."""
        rows = torch.cat([self.original[:, None], self.kept[:, None], self.completions], dim=1)
        return rows.flatten(0, 1)


def keep_mask(shape: tuple[int, ...], rows: int | None = None, keep: str | None = None) -> torch.Tensor:
    """(1, 1, H, W) bool, True on the top `rows` rows of (C, H, W) images, or on the part `keep` names."""
    height = shape[-2]
    if rows is not None and keep is not None:
        raise ArgumentError("give one of --rows and --keep")
    if rows is None and keep is None:
        raise ArgumentError("say what to keep: --rows K (the top K rows) or --keep top-half")
    if keep is not None:
        if keep not in KEEP:
            raise ArgumentError(f"--keep takes {', '.join(KEEP)}, got '{keep}'")
        rows = height // 2
    if not 0 < rows < height:
        raise ArgumentError(f"--rows must keep between 1 and {height - 1} of the images' {height} rows, got {rows}")
    mask = torch.zeros(1, 1, *shape[-2:], dtype=torch.bool)
    mask[..., :rows, :] = True
    return mask


def complete(run: Any, images: torch.Tensor | str | Path, *, rows: int | None = None, keep: str | None = None,
             mask: torch.Tensor | str | Path | None = None, n: int = 4,
             labels: torch.Tensor | list[int] | str | None = None, seed: int = 0, checkpoint: str = "latest",
             device: str | None = None, precision: str = "auto", batch_size: int = 500,
             progress: bool = False) -> Completion:
    """Complete images with a run: their known part kept, the rest generated, `n` times each.

    Args:
        run: A run directory (or `genlab.runs.Run`) whose model takes a source image and a mask at sampling.
        images: (N, C, H, W) in [-1, 1], or an image file, a folder of them or an .npz.
        rows: Keep the top `rows` rows. Or `keep="top-half"`, or a `mask` (file or (1|N, 1, H, W) tensor,
            True / white where kept); exactly one of the three.
        n: Completions of each image, each from its own draws.
        labels: Class of each image (or one for all; "3" or "3,5" as --class takes them), for runs
            trained with --condition label.
        seed: Seeds the one generator all completions are drawn from.

    Returns:
        A `Completion` (originals, mask, completions; `grid_rows()` for a picture).

    Raises:
        ArgumentError: The run's model cannot complete, or the images, mask or rows do not fit it.
    """
    from ..conditions import parse_classes, read_items
    from ..runs import Run

    run = run if isinstance(run, Run) else Run(run)
    model = run.load_model(checkpoint, device=device)
    if not {SOURCE, MASK} <= set(model.conditions):
        raise ArgumentError(f"{run.path} is a {run.model_name} run, whose model takes no input image with a mask; "
                            "complete with a run that does, e.g. `genlab train pixelcnn --data ...`")
    if n < 1:
        raise ArgumentError(f"-n (completions per image) must be at least 1, got {n}")
    shape = tuple(model.data_shape)
    x = read_items(images, shape) if isinstance(images, (str, Path)) else torch.as_tensor(images).float()
    if x.dim() == 3:
        x = x[None]
    if tuple(x.shape[1:]) != shape:
        raise ArgumentError(f"the images are {tuple(x.shape[1:])}; this run makes {shape}")
    if mask is None:
        known = keep_mask(shape, rows, keep)
    elif rows is not None or keep is not None:
        raise ArgumentError("give one of --rows, --keep and --mask")
    else:
        known = read_items(mask, (1, *shape[1:])) > 0 if isinstance(mask, (str, Path)) else torch.as_tensor(mask).bool()
    known = known.reshape(-1, 1, *shape[1:]).expand(len(x), 1, *shape[1:]) if len(known) == 1 else known
    if tuple(known.shape) != (len(x), 1, *shape[1:]):
        raise ArgumentError(f"the mask is {tuple(known.shape)}; give one (1, H, W) mask or one per image")
    conditions = {SOURCE: x.repeat_interleave(n, 0), MASK: known.repeat_interleave(n, 0)}
    if isinstance(labels, str):
        names = list(model.spec.class_names) if model.spec.class_names else None
        labels = parse_classes(labels, len(x), model.num_classes, names)
    if labels is not None:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if len(labels) == 1:
            labels = labels.expand(len(x))
        if len(labels) != len(x):
            raise ArgumentError(f"{len(labels)} class labels for {len(x)} images; give one, or one per image")
        conditions[LABEL] = labels.repeat_interleave(n, 0)
    out = run.sample(len(x) * n, conditions, seed=seed, batch_size=batch_size, checkpoint=checkpoint, device=device,
                     progress=progress, precision=precision)
    return Completion(x, known.clone(), out.view(len(x), n, *shape))
