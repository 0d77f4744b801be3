"""Prompt adherence of a caption-conditioned run: do its images show what the prompt names?

For each prompt, n samples drawn under it and n drawn with no caption are both checked against it:
the class from the evaluation's feature network, the thickness, size and slant measured on the pixels
with the run's own caption rule (`data/captions.py`). The share that matches every word the prompt
names, prompted against unprompted, is how much the prompt controls.
"""

from __future__ import annotations

from typing import Any

import torch

from ..batch import TEXT, TEXT_MASK
from ..errors import GenlabError
from ..runs import Run


def prompt_adherence(run: Run, prompts: list[str], *, n: int = 200, guidance: float = 3.0, seed: int = 0,
                     features: str = "auto", data_dir: str | None = None, **options: Any) -> dict[str, dict[str, float]]:
    """{prompt: {"prompted": share, "unprompted": share}} for a run trained with `--condition text`.

    Args:
        run: the run; its assets hold the caption rule and tokenizer it was trained with.
        prompts: e.g. ["a thin upright three", "a large seven"].
        n: samples per prompt (and as many unprompted).
        guidance: classifier-free guidance scale of the prompted samples.
        **options: sampling options (sampler, steps, precision...).
    """
    from ..data.captions import CAPTIONS_ASSET, CaptionRule, adherence
    from ..data.text import tokenizer_from_assets
    from .evaluate import dataset_for
    from .features import feature_extractor

    if TEXT not in run.conditions:
        raise GenlabError(f"{run.path} was trained without captions; prompt adherence needs --condition text")
    assets = run.assets()
    rule, tokenizer = CaptionRule.from_json(assets[CAPTIONS_ASSET]), tokenizer_from_assets(assets)
    extractor = feature_extractor(dataset_for("run", run, None, data_dir), features)
    if not extractor.num_classes:
        raise GenlabError("the feature network has no class output to read the digit with; use features='auto'")

    def predicted(x: torch.Tensor) -> torch.Tensor:
        return extractor(x)[1].argmax(1)

    unprompted = run.sample(n, seed=seed + 1, **options)
    classes = predicted(unprompted)
    out = {}
    for prompt in prompts:
        ids = torch.tensor(tokenizer.encode(prompt)).long().expand(n, -1)
        conditions = {TEXT: ids, TEXT_MASK: torch.ones_like(ids, dtype=torch.bool)}
        x = run.sample(n, conditions, seed=seed, guidance_scale=guidance, **options)
        out[prompt] = {"prompted": adherence(x, predicted(x), prompt, rule),
                       "unprompted": adherence(unprompted, classes, prompt, rule)}
    return out
