"""Conditions from what a user types: class labels, a prompt, an input file, a mask file.

One route for every model: `genlab sample RUN --class 7 | --prompt "..." | --input FILE | --mask FILE`
builds a batch of named conditions and checks it against the conditions the run was trained with. The
named commands (inpaint, upscale, img2img, translate, complete) are this route with the input's role fixed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .batch import CONTEXT, LABEL, LOW_RES, MASK, PROMPT, SOURCE, TEXT, TEXT_MASK, Batch
from .errors import ArgumentError

# the conditions an --input file can feed, in the order they are tried: a run that upscales or
# forecasts does that with its input before anything else (a diffusion run takes a source image too)
INPUT_ROLES = (LOW_RES, CONTEXT, SOURCE)


def parse_classes(classes: str, n: int, num_classes: int, class_names: list[str] | None = None) -> torch.Tensor:
    """"3", "0,1,2" (cycled to n), "all" (every class in turn) or class names -> (n,) labels."""
    if classes == "all":
        return torch.arange(n) % max(1, num_classes)
    values = []
    for item in (v.strip() for v in classes.split(",") if v.strip()):
        if item.lstrip("-").isdigit():
            values.append(int(item))
        elif class_names and item in class_names:
            values.append(class_names.index(item))
        else:
            named = f" or one of {class_names}" if class_names else ""
            raise ArgumentError(f"--class takes class numbers (e.g. 3 or 0,1,2), 'all'{named}; got '{item}'")
    if not values:
        raise ArgumentError("--class is empty; give e.g. --class 3")
    return torch.tensor([values[i % len(values)] for i in range(n)])


def read_items(path: str | Path, shape: tuple[int, ...]) -> torch.Tensor:
    """Images (an .npz, an image file or a folder of them) -> (N, *shape) in [-1, 1]."""
    from .errors import GenlabError

    path = Path(path)
    if not path.exists():
        raise ArgumentError(f"no such file or folder: {path}")
    if path.suffix == ".npz":
        from .imageio import load_samples

        x, _ = load_samples(path)
    else:  # one image file or a folder of them, read the way evaluation reads images
        from .eval.evaluate import read_images

        _, x = read_images(path, shape)
    if len(x) == 0:
        raise GenlabError(f"{path} holds no items")
    return x


def _resize(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if x.dim() == 4 and tuple(x.shape[-2:]) != tuple(shape[-2:]):
        x = torch.nn.functional.interpolate(x, size=tuple(shape[-2:]), mode="bilinear", antialias=True,
                                            align_corners=False)
    return x


def build_conditions(run, model, n: int, *, classes: str | None = None, prompt: str | None = None,
                     input: str | Path | None = None, mask: str | Path | None = None,
                     input_role: str | None = None, guided: bool = False) -> tuple[Batch, int]:
    """(conditions, n) for `model` of `run`; an input file fixes n to its number of items. `guided`: a
    classifier guides the sampling, so classes are taken even from a run trained without them."""
    accepted = set(model.conditions)
    had = ", ".join(model.conditions) or "none"
    conditions: Batch = {}
    if input is not None:
        role = input_role or next((r for r in INPUT_ROLES if r in accepted), None)
        if role is None or role not in accepted:
            raise ArgumentError(f"this {run.model_name} run takes no input file (its conditions: {had}); "
                                "drop --input, or use a run trained with one")
        shape = tuple(model.data_shape)
        if role == LOW_RES and model.low_res_size:
            shape = (shape[0], model.low_res_size, model.low_res_size)
        x = read_items(input, shape)
        if role == LOW_RES and model.low_res_size:
            x = _resize(x, shape)  # arrays are read as they are
        conditions[role] = x
        n = len(x)
    if mask is not None:
        if MASK not in accepted:
            raise ArgumentError(f"this {run.model_name} run takes no mask (its conditions: {had})")
        m = read_items(mask, (1, *model.data_shape[1:]))
        m = _resize(m, model.data_shape) > 0  # white (known) -> True
        if len(m) == 1:
            m = m.expand(n, *m.shape[1:])
        conditions[MASK] = m
    if classes is not None:
        if LABEL not in accepted and not guided:
            raise ArgumentError(f"this {run.model_name} run was trained without class labels (its conditions: {had}); "
                                "sample without --class, or train with --condition label")
        conditions[LABEL] = parse_classes(classes, n, model.num_classes, model.spec.class_names and list(model.spec.class_names))
    if prompt is not None:
        if TEXT not in accepted and PROMPT not in accepted:
            raise ArgumentError(f"this {run.model_name} run takes no prompt (its conditions: {had})")
        tokens = prompt_tokens(run, prompt).expand(n, -1)
        if PROMPT in accepted:  # a language model continues the prompt
            conditions[PROMPT] = tokens
        else:  # a caption the model is conditioned on
            conditions[TEXT], conditions[TEXT_MASK] = tokens, torch.ones_like(tokens, dtype=torch.bool)
    return conditions, n


def prompt_tokens(run, prompt: str) -> torch.Tensor:
    """The prompt in the run's own tokenizer, (1, P) int64; an error for text it cannot encode."""
    from .data.text import tokenizer_from_assets

    if not prompt:
        raise ArgumentError("--prompt is empty; give some text, or leave --prompt out")
    try:
        ids = tokenizer_from_assets(run.assets()).encode(prompt)
    except ArgumentError as e:
        raise ArgumentError(f"--prompt: {e}") from None
    if not ids:
        raise ArgumentError(f"--prompt {prompt!r} encodes to no tokens")
    return torch.tensor(ids).long()[None]
