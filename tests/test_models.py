"""Unit behaviour of the native model pieces and the ASR model (beyond golden equality)."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import TINY_RDN, tiny_native_config

import gblsr
from gblsr.asr import make_coord
from gblsr.models import (
    AdaptivityHead,
    BasisConfig,
    LocalSpectralArm,
    ModelConfig,
    build_1d_basis,
    fourier_basis_1d,
    image_to_patches,
    make_valid_patch_mask,
    n_params,
    pad_to_multiple,
    patches_to_image,
    soft_order_mask,
)


def test_fourier_mode_order_closed_form():
    u = torch.linspace(-1, 1, 9)
    s = torch.tensor(0.7)
    phi = fourier_basis_1d(u, 6, s)
    expected = torch.stack(
        [
            torch.ones_like(u),
            torch.cos(math.pi * u * s),
            torch.sin(math.pi * u * s),
            torch.cos(2 * math.pi * u * s),
            torch.sin(2 * math.pi * u * s),
            torch.cos(3 * math.pi * u * s),
        ],
        dim=-1,
    )
    torch.testing.assert_close(phi, expected)
    # odd p_max ends on a sine
    assert torch.allclose(fourier_basis_1d(u, 5, s)[..., -1], torch.sin(2 * math.pi * u * s))


def test_cosine_family_closed_form():
    u = torch.linspace(-1, 1, 5)
    s_e = torch.full((2, 1), 1.5)
    phi = build_1d_basis(u, 4, s_e, "cosine")
    assert phi.shape == (2, 5, 4)
    k = torch.arange(4.0)
    torch.testing.assert_close(phi[0], torch.cos(k * math.pi * 1.5 * (u[:, None] + 1) / 2))


def test_soft_mask_keeps_every_patch_axis():
    # One patch column: the reference squeezed that axis and mixed up patches' orders.
    p_soft = torch.tensor([1.0, 9.0, 4.0]).view(1, 3, 1, 1)
    mask = soft_order_mask(p_soft, 5, 4.0)
    assert mask.shape == (1, 3, 1, 5, 5)
    for i, p in enumerate([1.0, 9.0, 4.0]):
        k = torch.arange(5.0)
        expected = torch.sigmoid((p - torch.maximum(k[:, None], k[None, :])) * 4.0)
        torch.testing.assert_close(mask[0, i, 0], expected)


def test_one_patch_wide_input_uses_each_patch_own_order():
    """nW == 1: each image and patch row must be rendered with its own p_soft."""
    torch.manual_seed(0)
    model = LocalSpectralArm(tiny_native_config(), bandwidth_mode="local_linear").eval()
    with torch.no_grad():
        model.decoder.adaptivity.proj.weight.normal_(0, 1.0)
        model.decoder.coeff_proj.weight.mul_(30)
    x = torch.rand(2, 3, 24, 8)  # 3 patch rows, 1 patch column, batch 2
    with torch.no_grad():
        full = model(x)
        for b in range(2):
            for r in range(3):
                alone = model.decoder.render(
                    full["coeffs"][b : b + 1, r : r + 1],
                    full["s_e"][b : b + 1, r : r + 1],
                    full["p_soft"][b : b + 1, r : r + 1],
                )
                torch.testing.assert_close(full["patches"][b, r], alone[0, 0])
    assert full["p_soft"].flatten().unique().numel() == 6


def test_head_starts_at_range_midpoints():
    lin = AdaptivityHead(4, (0.25, 2.0), (1.0, 16.0), "local_linear")
    log = AdaptivityHead(4, (0.25, 2.0), (1.0, 16.0), "local_logspace")
    f = torch.randn(3, 4)
    s, p = lin(f)
    assert torch.allclose(s, torch.tensor(1.125)) and torch.allclose(p, torch.tensor(8.5))
    assert torch.allclose(log(f)[0], torch.tensor(math.sqrt(0.5)))


def test_patch_round_trip_and_padding_rules():
    x = torch.rand(2, 3, 16, 24)
    assert torch.equal(patches_to_image(image_to_patches(x, 8)), x)
    xp, info = pad_to_multiple(torch.rand(1, 3, 73, 97), 8)
    assert xp.shape[-2:] == (80, 104)
    assert (info["pad_t"], info["pad_b"], info["pad_l"], info["pad_r"]) == (3, 4, 3, 4)
    _, tiny = pad_to_multiple(torch.rand(1, 3, 2, 3), 8)
    assert tiny["mode_used"] == "replicate"
    hand = {"padded_h": 16, "padded_w": 16, "pad_t": 8, "pad_l": 0, "orig_h": 8, "orig_w": 8}
    assert make_valid_patch_mask(hand, 8).tolist() == [[False, False], [True, False]]


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (33, 17), (64, 64)])
def test_native_any_input_size(size):
    model = LocalSpectralArm(tiny_native_config(), bandwidth_mode="global_scalar").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size))
    assert out["recon"].shape == (1, 3, *size)
    assert out["valid_patch_mask"].all()


def test_config_validation_errors():
    with pytest.raises(ValueError, match="power of two"):
        ModelConfig(arm="local_spectral", patch_size=12)
    with pytest.raises(ValueError, match="differs"):
        ModelConfig(arm="local_spectral", patch_size=8, basis=BasisConfig(patch_size=16))
    with pytest.raises(ValueError, match="unknown family"):
        BasisConfig(patch_size=8, family="wavelet")
    with pytest.raises(ValueError, match="bandwidth_mode"):
        LocalSpectralArm(tiny_native_config(), bandwidth_mode="global")


def test_asr_forward_shapes_and_bandwidth_init():
    model = gblsr.GBLSRScalarASR(encoder_cfg=TINY_RDN, decoder_cfg={"bandwidth_init": 0.5})
    assert abs(model.decoder.bandwidth().item() - 0.5) < 1e-6
    lr = torch.rand(2, 3, 6, 5)
    coord = torch.rand(2, 17, 2) * 2 - 1
    assert model(lr, coord, torch.full_like(coord, 0.1)).shape == (2, 17, 3)
    assert model(lr, coord).shape == (2, 17, 3)  # cell is optional


def test_predict_full_builds_no_graph_and_tiles_exactly():
    model = gblsr.GBLSRScalarASR(encoder_cfg=TINY_RDN)
    lr = torch.rand(1, 3, 7, 9)
    a = model.predict_full(lr, 20, 23, tile=None)
    b = model.predict_full(lr, 20, 23, tile=37)
    assert not a.requires_grad
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # the query path at the same pixel centres agrees with the full render
    coord = make_coord((20, 23)).unsqueeze(0)
    with torch.no_grad():
        q = model(lr, coord).view(1, 20, 23, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(q, a, rtol=0, atol=1e-5)


def test_float64_inputs_stay_float64():
    model = gblsr.GBLSRScalarASR(encoder_cfg=TINY_RDN).double()
    out = model.predict_full(torch.rand(1, 3, 5, 6, dtype=torch.float64), 9, 11)
    assert out.dtype == torch.float64
    native = LocalSpectralArm(tiny_native_config(), bandwidth_mode="local_linear").double()
    assert native(torch.rand(1, 3, 9, 10, dtype=torch.float64))["recon"].dtype == torch.float64


def test_parameter_counts_of_the_reference_configs():
    native = LocalSpectralArm(ModelConfig(arm="local_spectral"), bandwidth_mode="global_scalar")
    assert n_params(native) == 989_955
    assert n_params(gblsr.BaselineArm(ModelConfig(arm="global_fourier_mlp"))) == 1_121_539
