"""The pure-PyTorch Gaussian rasteriser against a slow per-pixel reference written from the
documented semantics of the gsplat fork's 2-D sum kernel (see gblsr.peers.gaussian_raster).

The reference below projects one Gaussian at a time with float32 scalars, builds each 16 x 16
tile's list in ascending Gaussian index (the kernel's sort order, all depths 0), keeps the first
256 when capped, and sums ``colour * min(1, exp(-sigma))`` pixel by pixel with the kernel's skips.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gblsr.peers import gaussian_raster as gr

F32 = np.float32


def reference_render(means, chol, colour, H, W, tile_cap):
    """means (B, N, 2) NDC, chol (B, N, 3), colour (B, N, C): numpy float32 -> (B, C, H, W)."""
    B, N, C = colour.shape
    out = np.zeros((B, C, H, W), np.float32)
    tiles_x, tiles_y = (W + 15) // 16, (H + 15) // 16
    for b in range(B):
        cx = np.zeros(N, F32)
        cy = np.zeros(N, F32)
        conic = np.zeros((N, 3), F32)
        boxes = []
        for n in range(N):
            x, y = means[b, n]
            cx[n] = F32(0.5 * W) * x + F32(0.5 * W)
            cy[n] = F32(0.5 * H) * y + F32(0.5 * H)
            l11, l21, l22 = chol[b, n]
            a, off, c = l11 * l11, l11 * l21, l21 * l21 + l22 * l22
            det = a * c - off * off
            if det == 0:
                boxes.append(None)
                continue
            inv = F32(1) / det
            conic[n] = (c * inv, -off * inv, a * inv)
            half = F32(0.5) * (a + c)
            lmax = half + np.sqrt(max(F32(0.1), half * half - det))
            r = np.ceil(F32(3) * np.sqrt(lmax))
            tcx, tcy, tr = cx[n] / F32(16), cy[n] / F32(16), r / F32(16)
            boxes.append(
                (
                    min(max(0, int(tcx - tr)), tiles_x),
                    min(max(0, int(tcx + tr + F32(1))), tiles_x),
                    min(max(0, int(tcy - tr)), tiles_y),
                    min(max(0, int(tcy + tr + F32(1))), tiles_y),
                )
            )
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                members = [
                    n
                    for n in range(N)
                    if boxes[n] is not None
                    and boxes[n][0] <= tx < boxes[n][1]
                    and boxes[n][2] <= ty < boxes[n][3]
                ]
                if tile_cap is not None:
                    members = members[:tile_cap]
                if not members:
                    continue
                idx = np.array(members)
                for r in range(ty * 16, min(H, ty * 16 + 16)):
                    for q in range(tx * 16, min(W, tx * 16 + 16)):
                        dx = cx[idx] - F32(q)
                        dy = cy[idx] - F32(r)
                        k = conic[idx]
                        sigma = F32(0.5) * (k[:, 0] * dx * dx + k[:, 2] * dy * dy) + (
                            k[:, 1] * dx * dy
                        )
                        with np.errstate(over="ignore"):  # sigma < 0 terms are skipped
                            alpha = np.minimum(F32(1), np.exp(-sigma))
                        use = (sigma >= 0) & (alpha >= F32(1.0 / 255.0))
                        out[b, :, r, q] = (colour[b, idx[use]] * alpha[use, None]).sum(0)
    return out


def make_field(B, h, w, sh, sw, seed, zero_frac=0.02):
    """A ContinuousSR-like field: a 2h x 2w grid drifted by < 1 LR pixel, Cholesky triples in
    the dictionary's box scaled by (sw, sh, sh) / 4, colours ~ N(0.5, 0.5). Some l11 are 0
    (det == 0: those Gaussians are dropped)."""
    g = torch.Generator().manual_seed(seed)
    H, W = round(h * sh), round(w * sw)
    i = torch.arange(2 * h, dtype=torch.float32)
    j = torch.arange(2 * w, dtype=torch.float32)
    yy, xx = torch.meshgrid(2 * (i / (2 * h)) - 1, 2 * (j / (2 * w)) - 1, indexing="ij")
    N = 4 * h * w
    off = torch.rand(B, N, 2, generator=g) * 2 - 1
    x = xx.reshape(-1) + 2 * off[..., 0] / w - 1 / W
    y = yy.reshape(-1) + 2 * off[..., 1] / h - 1 / H
    lo = torch.tensor([0.0, -0.86, 0.0])
    hi = torch.tensor([2.36, 1.54, 2.23])
    L = (lo + (hi - lo) * torch.rand(B, N, 3, generator=g)) / 4
    L[torch.rand(B, N, generator=g) < zero_frac, 0] = 0.0
    L = L * torch.tensor([sw, sh, sh])
    col = torch.randn(B, N, 3, generator=g) * 0.5 + 0.5
    return torch.stack([x, y], -1), L, col, H, W


CASES = [
    # (h, w, scale_h, scale_w)
    (12, 10, 1.0, 1.0),
    (10, 9, 2.0, 2.0),
    (9, 8, 2.7, 2.7),
    (7, 6, 4.0, 4.0),
    (7, 6, 5.5, 5.5),
    (5, 6, 8.0, 8.0),
    (6, 9, 3.0, 2.0),  # anisotropic scale, non-square output
]


@pytest.mark.parametrize("tile_cap", [None, 256])
@pytest.mark.parametrize("h,w,sh,sw", CASES)
def test_matches_reference(h, w, sh, sw, tile_cap):
    means, chol, col, H, W = make_field(2, h, w, sh, sw, seed=h * 100 + w)
    ours = gr.render_gaussians(means, chol, col, H, W, tile_cap=tile_cap)
    assert ours.shape == (2, 3, H, W)
    ref = reference_render(means.numpy(), chol.numpy(), col.numpy(), H, W, tile_cap)
    ref = torch.from_numpy(ref)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_cap_binds_at_low_scale_only():
    """The official cap changes x1/x2 renders (the artefact) and leaves x4+ alone."""
    for sh, binds in ((1.0, True), (2.0, True), (4.0, False), (8.0, False)):
        means, chol, col, H, W = make_field(1, 10, 10, sh, sh, seed=3)
        capped = gr.render_gaussians(means, chol, col, H, W, tile_cap=256)
        full = gr.render_gaussians(means, chol, col, H, W)
        assert bool((capped - full).abs().max() > 1e-3) == binds, sh


def test_regions_and_blocking_do_not_change_the_result(monkeypatch):
    means, chol, col, H, W = make_field(2, 9, 11, 3.3, 3.3, seed=5)
    for cap in (None, 256):
        full = gr.render_gaussians(means, chol, col, H, W, tile_cap=cap)
        win = gr.render_gaussians(means, chol, col, H, W, tile_cap=cap, region=(5, 7, 17, 21))
        torch.testing.assert_close(win, full[:, :, 5:22, 7:28], rtol=1e-6, atol=1e-6)
        monkeypatch.setattr(gr, "_TILES_PER_BLOCK", 2)
        small = gr.render_gaussians(means, chol, col, H, W, tile_cap=cap, max_elements=1000)
        monkeypatch.undo()
        torch.testing.assert_close(small, full, rtol=1e-6, atol=1e-6)


def test_projection_edge_cases():
    # det == 0 -> dropped (radius 0, empty box); far outside -> empty box; radius floor.
    means = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [0.0, 0.0]]])
    chol = torch.tensor([[[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.1, 0.0, 0.1]]])
    centre, conic, radius, box = gr.project_gaussians(means, chol, 32, 48)
    assert radius[0, 0] == 0 and box[0, 0, 0] == box[0, 0, 1]
    # Sigma = I: lmax = 1 + sqrt(0.1) (the floor), radius = ceil(3 * 1.158) = 4.
    assert radius[0, 1] == 4
    torch.testing.assert_close(centre[0, 1], torch.tensor([24.0, 16.0]))
    torch.testing.assert_close(conic[0, 1], torch.tensor([1.0, 0.0, 1.0]))
    assert box[0, 1].tolist() == [1, 2, 0, 2]  # x: [24/16 - 4/16, 24/16 + 4/16 + 1)
    assert box[0, 2, 0] == box[0, 2, 1] == 3  # clamped to 3 tiles wide: empty
    # Tiny Gaussian: lmax = 0.0001 + sqrt(0.1) -> radius ceil(3 * 0.5624) = 2.
    assert radius[0, 3] == 2
    img = gr.render_gaussians(means, chol, torch.ones(1, 4, 3), 32, 48)
    # Only Gaussians 1 and 3 are drawn, both centred on pixel (16, 24).
    assert img[0, 0, 16, 24] == pytest.approx(2.0)
    assert float(img[0, 0, 0, 0]) == 0.0  # untouched pixels are 0, not the background


def test_float64_and_gradients():
    means, chol, col, H, W = make_field(2, 5, 4, 2.5, 2.5, seed=9)
    ref = gr.render_gaussians(means, chol, col, H, W)
    out64 = gr.render_gaussians(means.double(), chol.double(), col.double(), H, W)
    assert out64.dtype == torch.float64
    # Rare alpha-threshold flips aside, float64 agrees with float32.
    assert float((out64.float() - ref).abs().gt(1e-4).float().mean()) < 0.02
    means.requires_grad_(True)
    chol.requires_grad_(True)
    col.requires_grad_(True)
    gr.render_gaussians(means, chol, col, H, W).square().mean().backward()
    for t in (means, chol, col):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_rejects_bad_cap():
    means, chol, col, H, W = make_field(1, 3, 3, 2, 2, seed=1)
    with pytest.raises(ValueError, match="tile_cap"):
        gr.render_gaussians(means, chol, col, H, W, tile_cap=0)


def test_thin_elongated_gaussians_match_reference():
    """Needle-like Gaussians (l22 near 0, large l21) stress the per-sub-block culling."""
    means, chol, col, H, W = make_field(2, 6, 7, 3.0, 3.0, seed=11, zero_frac=0.0)
    g = torch.Generator().manual_seed(12)
    chol[..., 2] = chol[..., 2] * 0.02 * torch.rand(chol.shape[:-1], generator=g)
    chol[..., 1] = (torch.rand(chol.shape[:-1], generator=g) * 2 - 1) * 1.54 / 4 * 3.0
    for cap in (None, 256):
        ours = gr.render_gaussians(means, chol, col, H, W, tile_cap=cap)
        ref = torch.from_numpy(
            reference_render(means.numpy(), chol.numpy(), col.numpy(), H, W, cap)
        )
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
