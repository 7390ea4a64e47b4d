"""Viewer tile math: the level pyramid, tile windows, and that a tile is exactly the same
window of a whole rendering at its level (GB-LSR, a peer, and bicubic)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import gblsr
from gblsr.data.image_io import to_uint8
from gblsr.viewer.bicubic import BicubicRepresentation
from gblsr.viewer.tiles import (
    TileRequestError,
    build_levels,
    encode_png,
    render_tile,
    tile_window,
)

TINY_EDSR = {"encoder": "edsr", "encoder_cfg": {"num_blocks": 1, "num_features": 8}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than two on busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_rep(arch: str, h: int = 9, w: int = 13):
    torch.manual_seed(0)
    extra = {"decoder_cfg": {"p_max": 4}} if arch == "gblsr_asr" else {"hidden": [16, 16]}
    model = gblsr.create_model(arch, **TINY_EDSR, **extra).eval()
    with torch.no_grad():
        return model.encode(torch.rand(1, 3, h, w)), (h, w)


def test_levels_reach_max_scale_and_include_the_input_size():
    levels = build_levels((300, 500), 16, tile_size=256)
    assert [lv.index for lv in levels] == list(range(len(levels)))
    assert (levels[-1].height, levels[-1].width, levels[-1].scale) == (4800, 8000, 16.0)
    assert any((lv.height, lv.width) == (300, 500) for lv in levels)  # the 1x level
    assert max(levels[0].height, levels[0].width) <= 256 < max(levels[1].height, levels[1].width)
    assert all(a.width < b.width for a, b in zip(levels, levels[1:]))
    # a scale that is not a power of two ends the pyramid exactly
    odd = build_levels((37, 23), 7.3, tile_size=64)
    assert (odd[-1].height, odd[-1].width) == (round(7.3 * 37), round(7.3 * 23))
    assert [lv.scale for lv in odd] == [1.0, 2.0, 4.0, 7.3]


@pytest.mark.parametrize("bad", [0.5, 0, float("nan"), float("inf"), 65])
def test_levels_reject_bad_max_scale(bad):
    with pytest.raises(ValueError, match="max scale"):
        build_levels((10, 10), bad)


def test_tile_windows_cover_each_level_exactly_once():
    for lv in build_levels((37, 23), 7.3, tile_size=32):
        cols, rows = lv.grid(32)
        seen = np.zeros((lv.height, lv.width), dtype=int)
        for r in range(rows):
            for c in range(cols):
                top, left, height, width = tile_window(lv, c, r, 32)
                seen[top : top + height, left : left + width] += 1
        assert (seen == 1).all()
        with pytest.raises(TileRequestError, match="outside"):
            tile_window(lv, cols, 0, 32)
        with pytest.raises(TileRequestError, match="outside"):
            tile_window(lv, 0, rows, 32)


@pytest.mark.parametrize("arch", ["gblsr_asr", "liif", "lte"])
def test_served_tile_equals_crop_of_the_whole_render(arch):
    """Random levels and tile positions: the tile's pixels are the whole rendering's pixels at
    that level. The peers' windows are bit-identical in float; GB-LSR's separable contraction
    may differ in the last float bits (the Representation contract), and the served 8-bit PNG
    is identical."""
    rep, size = tiny_rep(arch)
    levels = build_levels(size, 7.5, tile_size=16)
    rng = random.Random(1)
    checked = 0
    for lv in levels:
        with torch.no_grad():
            whole = rep.render(lv.height, lv.width)[0]
        cols, rows = lv.grid(16)
        for c, r in {(rng.randrange(cols), rng.randrange(rows)) for _ in range(4)}:
            top, left, height, width = tile_window(lv, c, r, 16)
            tile = render_tile(rep, lv, c, r, 16)
            crop = whole[:, top : top + height, left : left + width]
            assert tile.shape == crop.shape == (3, height, width)
            if arch != "gblsr_asr":
                assert torch.equal(tile, crop)
            else:
                torch.testing.assert_close(tile, crop, rtol=0, atol=1e-6)
            png = np.asarray(Image.open(io.BytesIO(encode_png(tile))))
            assert np.array_equal(png, to_uint8(crop).permute(1, 2, 0).numpy())
            checked += 1
    assert checked >= 10 and any(lv.scale > 1 for lv in levels)


def test_bicubic_windows_are_bit_identical_to_the_whole_resize():
    rng = random.Random(0)
    torch.manual_seed(0)
    for _ in range(12):
        h, w = rng.randint(2, 30), rng.randint(2, 30)
        scale = rng.choice([0.4, 1.0, 2.0, 3.7, 9.5, 16.0])
        H, W = max(1, round(scale * h)), max(1, round(scale * w))
        lr = torch.rand(1, 3, h, w)
        whole = F.interpolate(lr, size=(H, W), mode="bicubic", align_corners=False)
        rep = BicubicRepresentation(lr)
        assert rep.input_size == (h, w)
        for _ in range(4):
            top, left = rng.randrange(H), rng.randrange(W)
            height, width = rng.randint(1, H - top), rng.randint(1, W - left)
            win = rep.render_region(top, left, height, width, H, W)
            assert torch.equal(win, whole[..., top : top + height, left : left + width])
        assert torch.equal(rep.render(H, W), whole)


def test_bicubic_rejects_bad_windows():
    rep = BicubicRepresentation(torch.rand(1, 3, 5, 6))
    with pytest.raises(ValueError, match="rows"):
        rep.render_region(8, 0, 4, 4, 10, 12)
    with pytest.raises(ValueError, match="must be"):
        BicubicRepresentation(torch.rand(3, 5, 6))
