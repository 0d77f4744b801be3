"""genlab.data.captions: properties measured on digit images, the captions they give, prompts checked back."""

from __future__ import annotations

import pytest
import torch

from genlab.data import load_dataset
from genlab.data.captions import CAPTIONS_ASSET, CaptionRule, adherence, measure, parse_prompt, tokenizer
from genlab.errors import ArgumentError


def bar(shear: float = 0.0, width: int = 2, top: int = 4, bottom: int = 24, size: int = 28) -> torch.Tensor:
    """A white stroke on black (1, 1, size, size) in [-1, 1]; shear > 0 puts its top to the right."""
    img = -torch.ones(1, 1, size, size)
    for y in range(top, bottom):
        x = int(round(size / 2 + shear * (size / 2 - y)))
        img[0, 0, y, x : x + width] = 1.0
    return img


def test_measured_slant_thickness_and_height_follow_the_drawing():
    upright, right, left = measure(torch.cat([bar(0.0), bar(0.4), bar(-0.4)]))["slant"].tolist()
    assert abs(upright) < 2 and right > 15 and left < -15
    thin, thick = measure(torch.cat([bar(width=1), bar(width=4)]))["thickness"].tolist()
    assert thick > 3 * thin
    short, tall = measure(torch.cat([bar(top=12, bottom=18), bar(top=2, bottom=26)]))["height"].tolist()
    assert short == pytest.approx(6 / 28) and tall == pytest.approx(24 / 28)


def test_digits_carry_captions_that_name_their_class_and_their_assets():
    ds = load_dataset("digits")
    batch = ds.train_batch(0, 16, seed=0)
    assert "text" in ds.spec.conditions and batch["text"].shape == (16, 6) and batch["text_mask"].dtype == torch.bool
    tok = tokenizer()
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    for ids, mask, label in zip(batch["text"], batch["text_mask"], batch["label"]):
        words = tok.decode(ids[mask].tolist()).split()
        assert words[0] == "a" and words[-1] == names[int(label)]
    captions = {tok.decode(ids[mask].tolist()) for ids, mask in zip(ds.items_train["text"], ds.items_train["text_mask"])}
    assert len(captions) > 60  # the properties vary, not only the class
    assert CAPTIONS_ASSET in ds.assets()


def test_a_run_reads_captions_with_its_own_rule():
    ds = load_dataset("digits")
    rule = CaptionRule.from_json(ds.assets()[CAPTIONS_ASSET])
    everything_thin = CaptionRule([(9.0, 10.0)] * 10, rule.height)  # every image is below "thin"'s cut
    from genlab.data.base import LoadOptions, load_data

    again = load_data("digits", LoadOptions(assets={**ds.assets(), CAPTIONS_ASSET: everything_thin.to_json()}))
    words = tokenizer().decode(again.items_train["text"][0][again.items_train["text_mask"][0]].tolist())
    assert "thin" in words.split()


def test_real_images_adhere_to_their_own_captions_and_prompts_parse():
    ds = load_dataset("digits")
    rule = CaptionRule.from_json(ds.assets()[CAPTIONS_ASSET])
    x, y = ds.x_val, ds.y_val  # 180 images
    captions = rule.captions(x, y)
    assert all(adherence(x[i : i + 1], y[i : i + 1], captions[i], rule) == 1.0 for i in range(0, len(x), 7))
    three = parse_prompt("a thin upright three")
    assert three == {"label": 3, "thickness": "thin", "slant": "upright"}
    sevens = x[y == 7]
    assert adherence(sevens, torch.full((len(sevens),), 7), "a seven", rule) == 1.0
    assert adherence(sevens, torch.full((len(sevens),), 7), "a one", rule) == 0.0


def test_unknown_prompt_words_are_refused_with_the_vocabulary():
    with pytest.raises(ArgumentError, match="does not know: purple.*it knows: .*thick"):
        tokenizer().encode("a purple seven")


# ------------------------------------------------------------------ an imagefolder with a captions file
def _captioned_folder(root, with_missing: bool = False):
    import numpy as np
    from PIL import Image

    root.mkdir()
    lines = []
    for i in range(12):
        img = np.zeros((8, 8), np.uint8)
        if i % 2:
            img[:, 3:5] = 255  # a vertical bar
        else:
            img[3:5, :] = 255  # a horizontal bar
        Image.fromarray(img).save(root / f"img{i:02d}.png")
        if not (with_missing and i == 5):
            lines.append(f"img{i:02d}.png\t{'a vertical bar' if i % 2 else 'a flat, wide bar'}")
    (root / "captions.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_an_imagefolder_with_a_captions_file_carries_its_captions(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    root = _captioned_folder(tmp_path / "bars")
    ds = load_dataset(f"imagefolder:{root}", image_size=8)
    assert "text" in ds.spec.conditions and ds.spec.extras["text_length"] == 4
    tok = __import__("genlab.data.text", fromlist=["tokenizer_from_assets"]).tokenizer_from_assets(ds.assets())
    assert tok.words == ["a", "bar", "flat", "vertical", "wide"]
    text = ds.items_train["text"]
    assert text.shape == (len(ds.x_train), 4)
    # each image's caption follows the image: vertical bars have their bright column in the middle
    vertical = tok.encode("vertical")[0]
    for img, ids in zip(torch.as_tensor(ds.x_train), text):
        is_vertical = bool(img[0, 0, 3] > 0)  # images in [-1, 1]
        assert (vertical in ids.tolist()) == is_vertical


def test_an_imagefolder_caption_file_must_cover_every_image(tmp_path, monkeypatch):
    from genlab.errors import DataError

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    root = _captioned_folder(tmp_path / "bars", with_missing=True)
    with pytest.raises(DataError, match="no caption for 1 of the 12 images"):
        load_dataset(f"imagefolder:{root}", image_size=8)


def test_a_text_run_on_a_captioned_folder_takes_prompts_in_its_words(tmp_path, monkeypatch, train_tiny):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    root = _captioned_folder(tmp_path / "bars")
    run = train_tiny("ddpm", steps=2, data=f"imagefolder:{root}", image_size=8, condition="text", batch_size=4)
    from genlab.conditions import build_conditions

    model = run.load_model()
    conditions, n = build_conditions(run, model, 3, prompt="a vertical bar")
    assert run.sample(n, conditions).shape == (3, 1, 8, 8)
    with pytest.raises(ArgumentError, match="does not know: round"):
        build_conditions(run, model, 3, prompt="a round bar")
