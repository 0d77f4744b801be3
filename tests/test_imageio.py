"""genlab.imageio: grids, .npz round trips, the deprecated rank-guessing writer, errors for unsupported files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.errors import GenlabError
from genlab import imageio
from genlab.imageio import load_samples, make_grid, to_uint8
from genlab.outputs import save_samples


def ramp_images(n: int, c: int, size: int) -> torch.Tensor:
    """Images whose pixels are all different multiples of 1/127.5 - 1 (exact in uint8)."""
    values = torch.arange(n * c * size * size) % 256
    return (values.float() / 127.5 - 1).reshape(n, c, size, size)


def test_to_uint8_maps_the_range_exactly():
    x = torch.tensor([-1.0, -2.0, 0.0, 1.0, 3.0, 127 / 127.5 - 1]).reshape(1, 1, 2, 3)
    assert to_uint8(x).reshape(-1).tolist() == [0, 0, 128, 255, 255, 127]
    assert to_uint8(torch.zeros(2, 3, 4, 5)).shape == (2, 4, 5, 3)


@pytest.mark.parametrize(
    "n, c, size, nrow, expected",
    [
        # 8x8 digits are enlarged 8x to 64 pixels; ceil(sqrt(10)) = 4 columns, 3 rows, 2-pixel borders
        (10, 1, 8, None, (3 * 66 + 2, 4 * 66 + 2, 1)),
        (6, 3, 16, 2, (3 * 66 + 2, 2 * 66 + 2, 3)),  # 16 -> 64 pixels, 2 columns given
        (5, 3, 32, None, (2 * 34 + 2, 3 * 34 + 2, 3)),  # 32 pixels and larger stay as they are
        (1, 1, 28, None, (1 * 58 + 2, 1 * 58 + 2, 1)),  # 28 -> 56 (scale 64 // 28 = 2)
    ],
)
def test_grid_shape(n, c, size, nrow, expected):
    grid = make_grid(ramp_images(n, c, size), nrow=nrow)
    assert grid.shape == expected and grid.dtype == np.uint8


def test_grid_places_each_image_and_fills_the_border():
    images = ramp_images(5, 3, 32)
    grid = make_grid(images, nrow=2)  # 2 columns, 3 rows, the last cell empty
    tiles = to_uint8(images)
    for i in range(5):
        r, col = divmod(i, 2)
        y, x = 2 + r * 34, 2 + col * 34
        assert np.array_equal(grid[y : y + 32, x : x + 32], tiles[i])
    assert (grid[:2] == 40).all() and (grid[:, :2] == 40).all()
    assert (grid[2 + 2 * 34 :, 2 + 34 :] == 40).all()  # the empty sixth cell


def test_grid_scale_repeats_pixels():
    images = ramp_images(1, 1, 8)
    grid = make_grid(images, scale=3, padding=0)
    assert grid.shape == (24, 24, 1)
    assert np.array_equal(grid[::3, ::3], to_uint8(images)[0])
    assert np.array_equal(grid[2::3, 1::3], to_uint8(images)[0])


def test_png_grid_opens_with_pillow(tmp_path):
    path = save_samples(ramp_images(4, 1, 8), tmp_path / "sub" / "grid.png", "image")
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (2 * 66 + 2, 2 * 66 + 2)
        assert np.array_equal(np.asarray(im)[:, :, None], make_grid(ramp_images(4, 1, 8)))
    with Image.open(save_samples(ramp_images(2, 3, 32), tmp_path / "rgb.png", "image")) as im:
        assert im.mode == "RGB"


def test_npz_round_trip_uint8_images_and_labels(tmp_path):
    images, labels = ramp_images(6, 3, 8), torch.arange(6)
    path = save_samples(images, tmp_path / "s.npz", "image", labels=labels)
    with np.load(path) as data:
        assert data["images"].dtype == np.uint8 and data["images"].shape == (6, 8, 8, 3)
        assert np.array_equal(data["images"], to_uint8(images))
    back, back_labels = load_samples(path)
    assert torch.equal(back, images)  # the ramp is exactly representable in 8 bits
    assert torch.equal(back_labels, labels)
    assert not list(tmp_path.glob("*.tmp*")), "the atomic write left its temporary file behind"


def test_npz_reads_other_tools_layouts(tmp_path):
    x = ramp_images(3, 3, 4)
    u8 = to_uint8(x)  # (N, H, W, C)
    np.savez(tmp_path / "nchw.npz", arr_0=u8.transpose(0, 3, 1, 2))
    np.savez(tmp_path / "unit.npz", images=(u8.astype(np.float32) / 255.0).transpose(0, 3, 1, 2))
    np.savez(tmp_path / "signed.npz", images=x.numpy() * 0.5)
    np.savez(tmp_path / "gray.npz", images=u8[..., 0])  # (N, H, W)
    assert torch.equal(load_samples(tmp_path / "nchw.npz")[0], x)
    assert torch.allclose(load_samples(tmp_path / "unit.npz")[0], x, atol=1e-6)
    assert torch.allclose(load_samples(tmp_path / "signed.npz")[0], x * 0.5)
    gray, labels = load_samples(tmp_path / "gray.npz")
    assert gray.shape == (3, 1, 4, 4) and labels is None


def test_npz_round_trip_points(tmp_path):
    points = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    path = save_samples(points, tmp_path / "p.npz", "points")
    with np.load(path) as data:
        assert list(data.keys()) == ["points"] and data["points"].dtype == np.float32
    back, labels = load_samples(path)
    assert torch.equal(back, points) and labels is None


def test_scatter_png_for_points(tmp_path):
    points = torch.rand(200, 2) * 2 - 1
    path = save_samples(points, tmp_path / "points.png", "points", reference=torch.zeros(10, 2))
    with Image.open(path) as im:
        assert im.size == (400, 400)  # 4 x 4 inches at 100 dpi
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 3  # something was drawn on the white figure


def test_unsupported_suffix_and_unreadable_files(tmp_path):
    with pytest.raises(GenlabError, match=r"kind 'image' .* written to \.png/\.jpg/\.jpeg \(grid of images\), \.npz"):
        save_samples(ramp_images(1, 1, 8), tmp_path / "samples.txt", "image")
    assert not (tmp_path / "samples.txt").exists()
    with pytest.raises(GenlabError, match="no such file"):
        load_samples(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(GenlabError, match="not a readable .npz"):
        load_samples(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", logits=np.zeros(3))
    with pytest.raises(GenlabError, match=r"holds \['logits'\]"):
        load_samples(tmp_path / "other.npz")
    np.savez(tmp_path / "flat.npz", images=np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(GenlabError, match=r"got shape \(3, 4\)"):
        load_samples(tmp_path / "flat.npz")


def test_the_deprecated_writer_guesses_images_and_points_by_rank(tmp_path):
    with pytest.deprecated_call():
        grid = imageio.save_samples(ramp_images(4, 1, 8), tmp_path / "grid.png")
    with Image.open(grid) as im:
        assert im.size == (2 * 66 + 2, 2 * 66 + 2)
    points, labels = torch.rand(20, 2) * 2 - 1, torch.arange(20) % 2
    with pytest.deprecated_call():
        imageio.save_samples(points, tmp_path / "p.npz", labels=labels)
        scatter = imageio.save_samples(points, tmp_path / "p.png", reference=torch.zeros(4, 1, 8, 8))
    back, back_labels = load_samples(tmp_path / "p.npz")
    assert torch.equal(back, points) and torch.equal(back_labels, labels)
    with Image.open(scatter) as im:  # a reference that is not points is left out of the scatter
        assert im.size == (400, 400)
