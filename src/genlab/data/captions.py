"""Captions for handwritten digits, derived from what each image measurably is.

"a small thick right-leaning seven": the digit's class, and three properties measured on its pixels,
so that a prompt controls more than the class and its adherence can be checked on generated images
with the same measurements:
- thickness: the share of ink, against the digit's own class (a one has less ink than an eight):
  the class's lowest third of the training images is "thin", its highest third "thick";
- size: the height of the rows holding ink: the lowest third "small", the highest third "large";
- slant: the shear of the ink's second moments, as an angle: "upright" within 5 degrees of vertical,
  "left-leaning" past 5 degrees left, "right-leaning" past 15 (most handwriting leans right a little).
A property in its middle band is left out of the caption, so captions vary in length. The cut points
are fitted on the training split and kept with the run (`captions.json`), so prompts and checks mean
the same thing later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch

from ..batch import TEXT, TEXT_MASK
from ..errors import ArgumentError
from .text import TOKENIZER_ASSET, WordTokenizer

CAPTIONS_ASSET = "captions.json"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PROPERTY_WORDS = {"size": ("small", "large"), "thickness": ("thin", "thick"),
                  "slant": ("left-leaning", "upright", "right-leaning")}
SLANT_DEGREES = {"left-leaning": -5.0, "upright": 5.0, "right-leaning": 15.0}
PAD = "<pad>"


def measure(x: torch.Tensor, chunk: int = 8192) -> dict[str, torch.Tensor]:
    """Ink share, ink height and slant (degrees, positive = leaning right) of images (N, 1, H, W) in [-1, 1]."""
    if len(x) > chunk:  # a few float copies of 60,000 images would take gigabytes at once
        parts = [measure(x[i : i + chunk], chunk) for i in range(0, len(x), chunk)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    ink = ((x.float().cpu() + 1) / 2).clamp(0, 1)[:, 0]  # (N, H, W)
    n, h, w = ink.shape
    total = ink.sum((1, 2)).clamp(min=1e-6)
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    y_mean = (ink * ys).sum((1, 2)) / total
    x_mean = (ink * xs).sum((1, 2)) / total
    dy, dx = ys - y_mean.view(n, 1, 1), xs - x_mean.view(n, 1, 1)
    mu11 = (ink * dx * dy).sum((1, 2)) / total
    mu02 = (ink * dy * dy).sum((1, 2)) / total
    # rows go down the image: a digit leaning right has its top to the right, so x falls as y grows
    slant = torch.rad2deg(torch.atan(-mu11 / mu02.clamp(min=1e-6)))
    rows = ink.amax(2) > 0.3  # (N, H)
    first = rows.float().argmax(1)
    last = h - 1 - rows.flip(1).float().argmax(1)
    height = torch.where(rows.any(1), (last - first + 1).float() / h, torch.zeros(n))
    return {"thickness": total / (h * w), "height": height, "slant": slant}


@dataclass
class CaptionRule:
    """Where the words change: per-class ink terciles, global height terciles (fitted on training images)."""

    thickness: list[tuple[float, float]]  # per class: (thin below, thick above)
    height: tuple[float, float]  # (small below, large above)

    @classmethod
    def fit(cls, x: torch.Tensor, labels: torch.Tensor) -> "CaptionRule":
        m = measure(x)
        thirds = torch.tensor([1 / 3, 2 / 3])
        thickness = []
        for c in range(len(DIGIT_WORDS)):
            values = m["thickness"][labels == c]
            lo, hi = torch.quantile(values, thirds).tolist() if len(values) else (0.0, 1.0)
            thickness.append((lo, hi))
        return cls(thickness, tuple(torch.quantile(m["height"], thirds).tolist()))

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "CaptionRule":
        d = json.loads(raw)
        return cls([tuple(t) for t in d["thickness"]], tuple(d["height"]))

    def properties(self, x: torch.Tensor, labels: torch.Tensor) -> list[dict[str, str | None]]:
        """The words each image earns: {"size": "small" | "large" | None, "thickness": ..., "slant": ...}."""
        m = measure(x)
        out = []
        for thick, height, slant, label in zip(m["thickness"].tolist(), m["height"].tolist(), m["slant"].tolist(),
                                               labels.tolist()):
            lo, hi = self.thickness[int(label)]
            out.append({"size": "small" if height < self.height[0] else "large" if height > self.height[1] else None,
                        "thickness": "thin" if thick < lo else "thick" if thick > hi else None,
                        "slant": _slant_word(slant)})
        return out

    def captions(self, x: torch.Tensor, labels: torch.Tensor) -> list[str]:
        return [caption(p, int(label)) for p, label in zip(self.properties(x, labels), labels.tolist())]


def _slant_word(degrees: float) -> str | None:
    if degrees < SLANT_DEGREES["left-leaning"]:
        return "left-leaning"
    if abs(degrees) <= SLANT_DEGREES["upright"]:
        return "upright"
    if degrees > SLANT_DEGREES["right-leaning"]:
        return "right-leaning"
    return None


def caption(properties: dict[str, str | None], label: int) -> str:
    words = [properties[k] for k in ("size", "thickness", "slant") if properties.get(k)]
    return " ".join(["a", *words, DIGIT_WORDS[label]])


def parse_prompt(prompt: str) -> dict[str, str | int]:
    """What a prompt asks for: {"label": 7, "size": "small", ...} for the words it names."""
    asked: dict[str, str | int] = {}
    for word in prompt.replace(",", " ").lower().split():
        if word in DIGIT_WORDS:
            asked["label"] = DIGIT_WORDS.index(word)
        for key, words in PROPERTY_WORDS.items():
            if word in words:
                asked[key] = word
    return asked


def adherence(x: torch.Tensor, predicted: torch.Tensor, prompt: str, rule: CaptionRule) -> float:
    """Share of images (N, 1, H, W) whose predicted class and measured properties match all `prompt` names."""
    asked = parse_prompt(prompt)
    props = rule.properties(x, predicted)
    hits = 0
    for p, label in zip(props, predicted.tolist()):
        hits += all((label == v) if k == "label" else (p[k] == v) for k, v in asked.items())
    return hits / max(1, len(props))


def tokenizer() -> WordTokenizer:
    """The caption vocabulary: fixed, so every run of every machine tokenises captions alike."""
    words = ["a", *DIGIT_WORDS, *(w for ws in PROPERTY_WORDS.values() for w in ws)]
    return WordTokenizer(words, specials=[PAD])


def caption_tensors(texts: list[str], tok: WordTokenizer, length: int) -> dict[str, torch.Tensor]:
    """Token ids (N, length) padded with <pad> (id 0) and their mask (True on real words)."""
    ids = torch.zeros(len(texts), length, dtype=torch.int64)
    for i, text in enumerate(texts):
        row = tok.encode(text)
        if len(row) > length:
            raise ArgumentError(f"caption '{text}' has {len(row)} words; at most {length} fit")
        ids[i, : len(row)] = torch.tensor(row)
    return {TEXT: ids, TEXT_MASK: ids != 0}


CAPTION_LENGTH = 6  # "a" + three property words + the digit, and one to spare


def captioned_items(x_train, y_train, x_val, y_val, assets: dict[str, bytes] | None):
    """Caption tensors for both splits, and the assets to keep: the rule (reused from a run) and the tokenizer."""
    from .base import decode

    def as_float(x):
        return decode(x if isinstance(x, torch.Tensor) else torch.from_numpy(x))

    images = as_float(x_train)
    rule = (CaptionRule.from_json(assets[CAPTIONS_ASSET]) if assets and CAPTIONS_ASSET in assets
            else CaptionRule.fit(images, y_train))
    tok = tokenizer()
    train = caption_tensors(rule.captions(images, y_train), tok, CAPTION_LENGTH)
    val = caption_tensors(rule.captions(as_float(x_val), y_val), tok, CAPTION_LENGTH)
    return train, val, {CAPTIONS_ASSET: rule.to_json(), TOKENIZER_ASSET: tok.to_json()}

