"""The fast GB-LSR renderer: exactness against the reference, encode-once / render-many, tiling.

Reference outputs come from ``tests/fixtures/render`` (decoder-level, see
``generate_render_fixtures.py``) and ``tests/fixtures/reference`` (whole models). Tolerance:
max |ours - ref| <= 1e-5 * max |ref|, as everywhere else.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import gblsr
from gblsr.asr import ASRRepresentation, GBLSRScalarASRDecoder, make_coord
from gblsr.asr.decoder import owning_cells
from gblsr.asr.render import (
    estimate_tile_bytes,
    grid_layout,
    plan_axis,
    query_cells,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Many small kernels: on a shared 2-core machine one thread is far steadier than two.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


FIXTURES = Path(__file__).parent / "fixtures" / "render"
REL_TOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def load_case(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["case"])
        t = {k: f.get_tensor(k) for k in f.keys()}
    dec = GBLSRScalarASRDecoder(
        meta["in_dim"], p_max=meta["p_max"], local_ensemble=meta["local_ensemble"]
    )
    dec.load_state_dict(
        {"coeff_proj.weight": t["weight"], "coeff_proj.bias": t["bias"], "log_s_e": t["log_s_e"]}
    )
    return dec.eval(), t, meta


CASES = sorted(FIXTURES.glob("*.safetensors"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_grid_renderer_matches_reference_decoder(path):
    dec, t, meta = load_case(path)
    with torch.no_grad():
        rep = dec.encode(t["feat"])
        for out in meta["outputs"]:
            name, H, W = out["name"], out["H"], out["W"]
            rows, cols = t[f"rows.{name}"], t[f"cols.{name}"]
            ref = t[f"out.{name}"]
            full = rep.render(H, W)
            got = full[:, :, rows][:, :, :, cols]
            assert rel_err(got, ref) <= REL_TOL, f"{path.stem} {name}: {rel_err(got, ref):.2e}"
            # Small tiles give the same image.
            tiled = rep.render(H, W, max_pixels=max(W, (H * W) // 3))
            assert rel_err(tiled, full) <= 1e-6, name


@pytest.mark.parametrize("path", CASES[:2], ids=[p.stem for p in CASES[:2]])
def test_per_query_paths_match_reference_decoder(path):
    """decoder.forward (training path) and rep.query render arbitrary points the same way."""
    dec, t, meta = load_case(path)
    b = t["feat"].shape[0]
    with torch.no_grad():
        rep = dec.encode(t["feat"])
        for out in meta["outputs"][:4]:
            name, H, W = out["name"], out["H"], out["W"]
            rows, cols = t[f"rows.{name}"], t[f"cols.{name}"]
            grid = make_coord((H, W), flatten=False)[rows][:, cols].reshape(1, -1, 2)
            grid = grid.expand(b, -1, -1).contiguous()
            ref = t[f"out.{name}"].permute(0, 2, 3, 1).reshape(b, -1, 3)
            assert rel_err(dec(t["feat"], grid), ref) <= REL_TOL, name
            assert rel_err(rep.query(grid), ref) <= REL_TOL, name


@pytest.mark.parametrize("path", CASES[:1], ids=[p.stem for p in CASES[:1]])
def test_render_region_matches_reference(path):
    dec, t, meta = load_case(path)
    out = next(o for o in meta["outputs"] if o["name"] == "x16")
    H, W = out["H"], out["W"]
    rows, cols, ref = t["rows.x16"], t["cols.x16"], t["out.x16"]
    with torch.no_grad():
        rep = dec.encode(t["feat"])
        # A window over the bottom-right border, where clamping decides the cells.
        top, left = H - 40, W - 57
        win = rep.render_region(top, left, 40, 57, H, W)
    r_sel = [i for i, r in enumerate(rows.tolist()) if r >= top]
    c_sel = [j for j, c in enumerate(cols.tolist()) if c >= left]
    got = win[:, :, rows[r_sel] - top][:, :, :, cols[c_sel] - left]
    assert rel_err(got, ref[:, :, r_sel][:, :, :, c_sel]) <= REL_TOL


def test_cell_choices_equal_per_point_choices_including_ties():
    """Per-row / per-column owning cells equal grid_sample's per-point choice, odd scales
    (exact ties broken by the +1e-6 shift) and clamped borders included."""
    for h in (1, 2, 3, 5, 7, 10, 13, 48):
        for H in sorted({1, 2, h, 2 * h, 3 * h, 5 * h, 7 * h, 3 * h + 1, 5 * h - 1, 37}):
            for le in (True, False):
                plan = plan_axis(H, h, 0, H, le, vertical=True)
                plan_c = plan_axis(H, h, 0, H, le, vertical=False)
                ys = make_coord((H, 1))[:, 0]
                shifts = (-1.0 / h, 1.0 / h) if le else (0.0,)
                eps = 1e-6 if le else 0.0
                for s, d in enumerate(shifts):
                    moved = (ys + d + eps).clamp(-1 + 1e-6, 1 - 1e-6)
                    pts = torch.stack([moved, torch.full_like(moved, 0.31)], -1)[None]
                    assert torch.equal(owning_cells(pts, h, 3)[0] // 3, plan.cell[s]), (h, H, le)
                    pts = torch.stack([torch.full_like(moved, -0.2), moved], -1)[None]
                    assert torch.equal(owning_cells(pts, 3, h)[0] % h, plan_c.cell[s]), (h, H)


def test_reference_model_fixtures_through_encode():
    """The whole-model golden fixtures (predict_full at x2..x8), rendered via encode()."""
    from safetensors import safe_open

    ref_dir = Path(__file__).parent / "fixtures" / "reference"
    checked = 0
    for path in sorted(ref_dir.glob("asr_*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            case = json.loads(f.metadata()["case"])
            t = {k: f.get_tensor(k) for k in f.keys()}
        spec = case["model"]
        model = gblsr.GBLSRScalarASR(
            encoder_cfg=spec["encoder_cfg"], decoder_cfg=spec["decoder_cfg"]
        )
        model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("state.")})
        model.eval()
        for call in case["calls"]:
            if call["method"] != "predict_full":
                continue
            lr = t[f"input.{call['name']}.lr"]
            ref = t[f"output.{call['name']}.pred"]
            with torch.no_grad():
                got = model.encode(lr).render(call["H_q"], call["W_q"])
            assert rel_err(got, ref) <= REL_TOL, (path.stem, call["name"])
            checked += 1
    assert checked >= 20


# --------------------------------------------------------------------------------------------
# Encode once, render many


def test_encode_render_api(asr_model):
    torch.manual_seed(1)
    lr = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        rep = asr_model.encode(lr)
        assert isinstance(rep, ASRRepresentation)
        assert rep.feature_size == (9, 11) and rep.input_size == (9, 11)
        assert rep.batch_size == 2 and rep.p_max == 16 and rep.local_ensemble
        assert rep.nbytes == 2 * 3 * 256 * 9 * 11 * 4
        assert "9x11" in repr(rep)
        x3 = rep.render(27, 33)
        assert x3.shape == (2, 3, 27, 33)
        assert rel_err(x3, asr_model.predict_full(lr, 27, 33)) <= 1e-6
        # Re-render at other sizes without encoding again.
        for H, W in ((20, 22), (31, 40), (9, 11), (4, 5)):
            assert rel_err(rep.render(H, W), asr_model.predict_full(lr, H, W, tile=None)) <= 1e-6
        win = rep.render_region(5, 7, 10, 12, 27, 33)
        assert rel_err(win, x3[:, :, 5:15, 7:19]) <= 1e-6
        # Arbitrary points agree with the grid.
        coord = make_coord((27, 33)).unsqueeze(0).expand(2, -1, -1)
        pts = rep.query(coord).view(2, 27, 33, 3).permute(0, 3, 1, 2)
        assert rel_err(pts, x3) <= 1e-6


@pytest.mark.parametrize("local_ensemble", [True, False])
def test_tiles_rows_and_windows_cover_the_image(local_ensemble):
    torch.manual_seed(2)
    coef = torch.randn(1, 3 * 25, 6, 7)
    rep = ASRRepresentation(grid_layout(coef, 5), torch.tensor(0.9), local_ensemble)
    H, W = 41, 50
    full = rep.render(H, W, max_pixels=H * W)
    for max_pixels in (37, 130, 600):
        assert rel_err(rep.render(H, W, max_pixels=max_pixels), full) <= 1e-6
        strips = list(rep.iter_rows(H, W, max_pixels=max_pixels))
        assert [s.shape[-1] for _, s in strips] == [W] * len(strips)
        assert rel_err(torch.cat([s for _, s in strips], dim=2), full) <= 1e-6
    out = torch.empty(1, 3, H, W)
    assert rep.render(H, W, max_pixels=100, out=out) is out
    for top, left, hh, ww in ((0, 0, 1, 1), (40, 49, 1, 1), (3, 10, 17, 1), (0, 0, H, W)):
        assert (
            rel_err(
                rep.render_region(top, left, hh, ww, H, W),
                full[..., top : top + hh, left : left + ww],
            )
            <= 1e-6
        )


def test_memory_budget_bounds_the_tiles():
    coef = torch.zeros(1, 768, 64, 64)
    rep = ASRRepresentation(grid_layout(coef, 16), torch.tensor(1.0), True)
    for budget in (8 << 20, 64 << 20, 512 << 20):
        rows, cols = rep.tile_shape(4096, 4096, max_memory=budget)
        est = estimate_tile_bytes(rows, cols, 1, 16, 64, 64, 4)
        assert est <= budget and rows >= 1 and cols >= 1
    # A budget too small for one full-width row splits the width.
    rows, cols = rep.tile_shape(100, 1 << 20, max_memory=8 << 20)
    assert cols < (1 << 20)
    assert rep.tile_shape(10, 10, max_pixels=None, max_memory=None) == (10, 10)


def test_bad_windows_and_sizes_raise():
    rep = ASRRepresentation(grid_layout(torch.zeros(1, 12, 3, 3), 2), torch.tensor(1.0), True)
    with pytest.raises(ValueError):
        rep.render(0, 5)
    with pytest.raises(ValueError):
        rep.render_region(5, 0, 6, 1, 10, 10)
    with pytest.raises(ValueError):
        rep.render_region(0, -1, 1, 1, 10, 10)
    with pytest.raises(ValueError):
        rep.query(torch.zeros(2, 4, 2))
    with pytest.raises(ValueError):
        grid_layout(torch.zeros(1, 13, 3, 3), 2)


def test_float64_and_autograd():
    torch.manual_seed(3)
    dec = GBLSRScalarASRDecoder(4, p_max=6)
    feat = torch.randn(1, 4, 5, 6)
    coord = make_coord((13, 17)).unsqueeze(0)
    # Gradients of the grid renderer equal those of the per-point path.
    img = dec.encode(feat).render(13, 17)
    g1 = torch.autograd.grad(img.square().sum(), [dec.coeff_proj.weight, dec.log_s_e])
    pts = dec(feat, coord)
    g2 = torch.autograd.grad(pts.square().sum(), [dec.coeff_proj.weight, dec.log_s_e])
    for a, b in zip(g1, g2):
        assert rel_err(a, b) <= 1e-5
    # float64 models render in float64.
    dec64 = dec.double()
    with torch.no_grad():
        out64 = dec64.encode(feat.double()).render(13, 17)
    assert out64.dtype == torch.float64
    assert rel_err(out64, img.detach()) <= 1e-5
    pts64 = dec64(feat.double(), coord.double())
    assert pts64.dtype == torch.float64


def test_query_cells_matches_decoder_query_on_random_points():
    torch.manual_seed(4)
    for le in (True, False):
        dec = GBLSRScalarASRDecoder(3, p_max=5, local_ensemble=le)
        feat = torch.randn(2, 3, 7, 4)
        # Random points plus exact cell borders and the corners of the square.
        ys = torch.tensor([-1.0, 1.0, 0.0, -1 + 2 / 7, 1 - 4 / 7])
        border = torch.stack(torch.meshgrid(ys, torch.tensor([-1.0, 0.5, 1.0]), indexing="ij"), -1)
        coord = torch.cat(
            [torch.rand(2, 60, 2) * 2 - 1, border.view(1, -1, 2).expand(2, -1, -1)], 1
        )
        with torch.no_grad():
            a = dec(feat, coord)
            b = query_cells(grid_layout(dec.coefficients(feat), 5), dec.bandwidth(), coord, le)
        assert rel_err(b, a) <= 1e-6


def test_predict_full_memory_knobs_do_not_change_the_result(asr_model):
    lr = torch.rand(1, 3, 6, 5)
    a = asr_model.predict_full(lr, 23, 19)
    b = asr_model.predict_full(lr, 23, 19, tile=17)
    c = asr_model.predict_full(lr, 23, 19, tile=None, max_memory=2 << 20)
    d = asr_model.predict_full(lr, 23, 19, tile=None)
    for x in (b, c, d):
        assert rel_err(x, a) <= 1e-6
    assert not a.requires_grad


def test_native_render_matches_plain_einsum():
    """Item 3: the native decoder's contraction equals the plain 6-index formula."""
    from gblsr.models.basis import BasisConfig, build_1d_basis, reconstruct_patch, soft_order_mask

    torch.manual_seed(5)
    for family in ("fourier", "cosine"):
        cfg = BasisConfig(patch_size=8, p_max=5, family=family)
        coeffs = torch.randn(2, 3, 1, 3, 5, 5)
        s_e = torch.rand(2, 3, 1, 1) + 0.5
        p_soft = torch.rand(2, 3, 1, 1) * 5
        coords = torch.linspace(-1, 1, 11)
        phi = build_1d_basis(coords, 5, s_e, family)
        m = coeffs * soft_order_mask(p_soft, 5, cfg.cutoff_sharpness).unsqueeze(-3)
        want = torch.einsum("bnmcij,bnmui,bnmvj->bnmcuv", m, phi, phi)
        got = reconstruct_patch(coeffs, s_e, p_soft, coords, cfg)
        assert rel_err(got, want) <= 1e-6
    assert math.isfinite(rel_err(got, want))
