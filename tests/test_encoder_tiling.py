"""Tiled encoding (gblsr.encoders.tiling): exact for convolutional encoders when the overlap
covers the receptive field, untiled-shaped for every encoder geometry, close for transformers."""

from __future__ import annotations

import pytest
import torch

from gblsr.encoders import EDSRConfig, EDSREncoder, HATConfig, HATEncoder
from gblsr.encoders.swinir import SwinIRConfig, SwinIREncoder
from gblsr.encoders.tiling import encode_tiled, tile_spans


@pytest.fixture(autouse=True)
def one_thread():
    # Small tensors on a shared machine: a second thread only adds synchronisation.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_tile_spans_cover_and_keep_length():
    spans = tile_spans(37, 10, 4)
    assert [(a, b) for a, b, _, _ in spans] == [(0, 10), (10, 20), (20, 30), (30, 37)]
    assert all(i1 - i0 == 18 and i0 <= a and b <= i1 for a, b, i0, i1 in spans)
    assert tile_spans(5, 10, 4) == [(0, 5, 0, 5)]
    with pytest.raises(ValueError):
        tile_spans(5, 0, 1)


def test_convolutional_encoder_exact_with_enough_overlap():
    torch.manual_seed(0)
    enc = EDSREncoder(EDSRConfig(num_blocks=2, num_features=8)).eval()  # radius 6 px
    x = torch.rand(2, 3, 29, 23)
    with torch.no_grad():
        ref = enc(x)
    got = encode_tiled(enc, x, tile=8, overlap=6)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    far = encode_tiled(enc, x, tile=8, overlap=2)
    assert (far - ref).abs().max() > 1e-3  # too little context is visible


@pytest.mark.parametrize("upsampler", ["none", "pixelshuffle"])
def test_swinir_tiled_shape_and_closeness(upsampler):
    torch.manual_seed(1)
    cfg = SwinIRConfig(embed_dim=8, depths=[2], num_heads=[2], window_size=4, upsampler=upsampler)
    enc = SwinIREncoder(cfg).eval()
    x = torch.rand(1, 3, 30, 21)
    with torch.no_grad():
        ref = enc(x)
    diffs = []
    for overlap in (4, 8, 16):
        got = encode_tiled(enc, x, tile=8, overlap=overlap)
        assert got.shape == ref.shape
        diffs.append(float((got - ref).abs().mean()))
    assert diffs[2] < diffs[0]
    # Context covering the whole image reproduces the untiled map.
    whole = encode_tiled(enc, x, tile=8, overlap=40)
    torch.testing.assert_close(whole, ref, rtol=1e-4, atol=1e-5)


def test_hat_x4_tiled_whole_context_exact():
    torch.manual_seed(2)
    cfg = HATConfig(embed_dim=8, depths=[1], num_heads=[2], window_size=4, squeeze_factor=4)
    enc = HATEncoder(cfg).eval()
    x = torch.rand(1, 3, 13, 10)
    with torch.no_grad():
        ref = enc(x)
    got = encode_tiled(enc, x, tile=4, overlap=16)
    assert got.shape == ref.shape == (1, 64, 52, 40)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_tiled_encoding_context_for_a_whole_model():
    import gblsr
    from gblsr.encoders.tiling import tiled_encoding

    torch.manual_seed(3)
    model = gblsr.create_model(
        "lte",
        encoder="edsr",
        encoder_cfg={"num_blocks": 1, "num_features": 8},
        hidden_dim=8,
        hidden=[8],
    ).eval()
    lr = torch.rand(1, 3, 17, 13)
    ref = model.predict_full(lr, 34, 26)
    with tiled_encoding(model, 6, 4) as m:  # EDSR with 1 block: radius 3 px
        got = m.predict_full(lr, 34, 26)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert isinstance(model.encoder, EDSREncoder)  # restored


def test_tile_for_budget():
    from gblsr.encoders.tiling import encoder_bytes_per_pixel, encoder_tile_for_budget

    with torch.device("meta"):
        enc = SwinIREncoder()
    bpp = encoder_bytes_per_pixel(enc)
    assert bpp == 4 * ((8 + 4) * 180 + 128)
    tile = encoder_tile_for_budget(enc, 512 << 20, overlap=16)
    assert tile % 8 == 0 and (tile + 32) ** 2 * bpp <= 512 << 20 < (tile + 40) ** 2 * bpp
    assert encoder_tile_for_budget(enc, 1, overlap=16) == 8  # never below one window
    edsr = EDSREncoder(EDSRConfig(num_blocks=1, num_features=8))
    assert encoder_bytes_per_pixel(edsr) == 8 * 8 * 4
