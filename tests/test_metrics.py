"""PSNR / SSIM as the SR literature computes them, optional LPIPS, and the GB-LSR metric panels."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import gblsr.metrics.quality as q
from gblsr.data.regions import quantile
from gblsr.metrics import (
    compute_metric_panel,
    compute_metric_panel_varres,
    edge_lpips,
    edge_mask,
    has_lpips,
    local_spectrum_error,
    lpips_metric,
    per_patch_psnr,
    per_region_mean,
    psnr,
    rgb_to_y,
    ssim,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_rgb_to_y_is_matlab_bt601():
    white, black = (
        torch.ones(3, 1, 1, dtype=torch.float64),
        torch.zeros(3, 1, 1, dtype=torch.float64),
    )
    assert rgb_to_y(white).item() == pytest.approx(235 / 255, abs=1e-12)
    assert rgb_to_y(black).item() == pytest.approx(16 / 255, abs=1e-12)
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    assert rgb_to_y(red).item() == pytest.approx((16 + 65.481) / 255, abs=1e-12)
    grey1 = torch.full((1, 2, 2), 0.5)
    torch.testing.assert_close(rgb_to_y(grey1), rgb_to_y(grey1.expand(3, 2, 2)))


def test_psnr_values():
    t = _rand(2, 3, 16, 16).double() * 0.8
    assert torch.isinf(psnr(t, t)).all()
    assert psnr(t + 0.1, t).tolist() == pytest.approx([20.0, 20.0], abs=1e-9)  # MSE 0.01
    assert psnr(t + 0.1, t, data_range=2.0)[0].item() == pytest.approx(
        20 + 20 * math.log10(2), abs=1e-9
    )
    # Y channel: a grey offset d moves Y by d * (65.481 + 128.553 + 24.966) / 255
    dy = 0.1 * 219.0 / 255.0
    assert psnr(t + 0.1, t, channel="y")[0].item() == pytest.approx(-20 * math.log10(dy), abs=1e-9)
    # shave: errors only in the 2-pixel border vanish
    p = t.clone()
    p[..., :2, :] += 0.3
    p[..., :, -2:] -= 0.3
    assert torch.isinf(psnr(p, t, shave=2)).all() and torch.isfinite(psnr(p, t, shave=1)).all()
    single = psnr(t[0] + 0.1, t[0])
    assert single.ndim == 0
    with pytest.raises(ValueError):
        psnr(t, t[..., :8])
    with pytest.raises(ValueError):
        psnr(t, t, shave=8)


def _ssim_direct(x: torch.Tensor, y: torch.Tensor) -> float:
    """Textbook SSIM on one greyscale image: explicit 11x11 Gaussian window, valid positions."""
    c = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(c**2) / (2 * 1.5**2))
    w = g[:, None] * g[None, :]
    w = w / w.sum()
    c1, c2 = 0.01**2, 0.03**2
    H, W = x.shape
    vals = []
    for i in range(H - 10):
        for j in range(W - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va = (w * a * a).sum() - ma**2
            vb = (w * b * b).sum() - mb**2
            cv = (w * a * b).sum() - ma * mb
            vals.append(
                ((2 * ma * mb + c1) * (2 * cv + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(torch.stack(vals).mean())


def test_ssim_matches_textbook_definition():
    t = _rand(3, 20, 23, seed=1).double()
    p = (t + 0.05 * _rand(3, 20, 23, seed=2).double()).clamp(0, 1)
    got = ssim(p, t).item()
    assert got == pytest.approx(_ssim_direct(rgb_to_y(p)[0], rgb_to_y(t)[0]), abs=1e-12)
    rgb = ssim(p, t, channel="rgb").item()
    direct = sum(_ssim_direct(p[c], t[c]) for c in range(3)) / 3
    assert rgb == pytest.approx(direct, abs=1e-12)


def test_ssim_identity_constants_and_variants():
    t = _rand(2, 3, 32, 32, seed=3)
    assert ssim(t, t).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    # constant images a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a = torch.full((1, 16, 16), 0.5, dtype=torch.float64)
    b = torch.full((1, 16, 16), 0.6, dtype=torch.float64)
    expect = (2 * 0.5 * 0.6 + 1e-4) / (0.25 + 0.36 + 1e-4)
    assert ssim(a, b, channel="rgb").item() == pytest.approx(expect, abs=1e-9)
    # reference variant: zero-padded "same" window differs from the valid one
    p = (t + 0.1 * _rand(2, 3, 32, 32, seed=4)).clamp(0, 1)
    assert ssim(p, t, padding="zeros").shape == (2,)
    assert ssim(p, t, padding="zeros")[0] != ssim(p, t)[0]
    assert ssim(p, t, shave=4)[0] != ssim(p, t)[0]
    with pytest.raises(ValueError):
        ssim(t[..., :8, :8], t[..., :8, :8])


def test_quantile_has_no_2_24_limit_and_matches_torch():
    y = _rand(1001, seed=5)
    for level in (0.0, 0.25, 0.37, 0.8, 1.0):
        assert quantile(y, level).item() == pytest.approx(torch.quantile(y, level).item(), abs=1e-7)
    big = torch.arange(2**24 + 3, dtype=torch.float64)
    assert quantile(big, 0.5).item() == pytest.approx((2**24 + 2) / 2)


def test_edge_mask_is_top_20_percent_of_sobel_magnitude():
    x = _rand(2, 3, 40, 48, seed=9)
    x[..., 24:] += 1.0  # a strong vertical step
    raw = edge_mask(x, dilate=0)
    assert raw.shape == (2, 1, 40, 48) and raw.dtype == torch.bool
    assert raw.float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert raw[:, 0, 5:-5, 23:25].all()  # the step is always an edge
    gx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    grey = x.mean(1, keepdim=True)
    g = torch.nn.functional.conv2d(grey, torch.stack([gx, gx.t()])[:, None], padding=1)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    for i in range(2):
        assert torch.equal(raw[i], mag[i] >= torch.quantile(mag[i], 0.8))
    dil = edge_mask(x)  # default: dilated by one pixel
    assert torch.equal(dil, torch.nn.functional.max_pool2d(raw.float(), 3, 1, 1) > 0.5)


@pytest.mark.skipif(has_lpips(), reason="LPIPS is installed here; this checks its absence")
def test_lpips_absent_warns_once_and_returns_none(monkeypatch):
    monkeypatch.setattr(q, "_lpips_warned", False)
    monkeypatch.setattr(q, "_lpips_cache", {})
    t = _rand(1, 3, 32, 32, seed=6)
    with pytest.warns(RuntimeWarning, match="LPIPS unavailable"):
        assert lpips_metric(t, t) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lpips_metric(t, t) is None  # no second warning
        assert edge_lpips(t, t) is None
    assert q.lpips_status() is not None


def test_local_spectrum_error():
    t = _rand(2, 3, 40, 36, seed=7)
    assert local_spectrum_error(t, t, 16).tolist() == [0.0, 0.0]  # cropped to 32x32, no assert
    p = t * 0.5
    # halving the image divides every power by 4: |log P_p - log P_t| = log 4 wherever unclamped
    assert local_spectrum_error(p, t, 8).tolist() == pytest.approx([math.log(4)] * 2, abs=1e-6)
    assert math.isnan(local_spectrum_error(t[..., :8, :8], t[..., :8, :8], 16)[0].item())


def test_per_region_mean_and_panels():
    vals = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]], dtype=torch.float64)
    labels = torch.tensor([[[0, 0], [2, 2]]])
    out = per_region_mean(vals, labels)
    assert out[0, 0].item() == 1.5 and out[0, 2].item() == 4.0
    assert math.isnan(out[0, 1].item()) and math.isnan(out[0, 3].item())

    t = _rand(2, 3, 32, 32, seed=8)
    p = (t + 0.05).clamp(0, 1)
    pp = per_patch_psnr(p, t, 16)
    assert pp.shape == (2, 2, 2)
    lab = torch.zeros(2, 2, 2, dtype=torch.long)
    panel = compute_metric_panel(p, t, 16, lab, lpips=False)
    for key in ("psnr", "ssim", "lpips", "edge_lpips", "local_spectrum_error"):
        assert panel[key].shape == (2,)
    assert torch.isnan(panel["lpips"]).all()
    for key in ("psnr_region", "ssim_region", "local_spectrum_error_region"):
        assert panel[key].shape == (2, 4)
    assert panel["psnr_region"][:, 0].tolist() == pytest.approx(pp.mean(dim=(1, 2)).tolist())
    torch.testing.assert_close(panel["psnr"], psnr(p, t))
    vr = compute_metric_panel_varres(p[..., :30], t[..., :30], 16, lpips=False)
    assert "psnr_region" not in vr and vr["psnr"].shape == (2,)
    with pytest.raises(ValueError):
        compute_metric_panel_varres(p, t[..., :30], 16)
