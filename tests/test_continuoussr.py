"""ContinuousSR (gblsr.peers.continuoussr): the Gaussian heads against golden fixtures of the
official code (tests/fixtures/generate_continuoussr_fixtures.py), and the model's behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gblsr.errors import UserInputError
from gblsr.peers.continuoussr import (
    ContinuousSR,
    field_means,
    gaussian_dictionary,
    scaled_cholesky,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "peers" / "continuoussr"
CASES = [
    "continuoussr_heads_head_5x7",
    "continuoussr_heads_head_6x4",
    "continuoussr_heads_release_5x7",
    "continuoussr_heads_release_b2_4x6",
]
TINY_ENCODER = {"base": "edsr", "base_cfg": {"num_blocks": 1, "num_features": 8}, "num_feat": 64}


def _load(name):
    from safetensors import safe_open

    with safe_open(str(FIXTURES / f"{name}.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        case = json.loads(f.metadata()["case"])
    return tensors, case


def _official_heads_state():
    tensors, _ = _load("continuoussr_heads_state")
    keys = {k[len("state.") : -len(".q")] for k in tensors if k.endswith(".q")}
    return {k: tensors[f"state.{k}.q"].float() * tensors[f"state.{k}.scale"] for k in keys}


class _Fixed(torch.nn.Module):
    def __init__(self, feat):
        super().__init__()
        self.feat = feat

    def forward(self, x):
        return self.feat


def _model(offset_input="lrelu", l21_scale="height", **kw):
    torch.manual_seed(0)
    return ContinuousSR(
        encoder="upsampled4",
        encoder_cfg=TINY_ENCODER,
        offset_input=offset_input,
        l21_scale=l21_scale,
        **kw,
    ).eval()


@pytest.fixture(scope="module")
def heads_state():
    return _official_heads_state()


@pytest.mark.parametrize("name", CASES)
def test_heads_match_official(name, heads_state):
    tensors, case = _load(name)
    release = case["checkout"] == "release"
    model = _model("raw" if release else "lrelu", "width" if release else "height")
    missing, unexpected = model.load_state_dict(heads_state, strict=False)
    assert not unexpected and all(k.startswith("encoder.") for k in missing)
    feat = tensors["input.feat"]
    B, h, w, H, W = case["batch"], case["h"], case["w"], case["H"], case["W"]
    sh, sw = case["scale"]
    with torch.no_grad():
        colour, chol, offset = model.heads(F.pixel_unshuffle(feat, 2))
        model.encoder = _Fixed(feat)
        rep = model.encode(torch.rand(B, 3, h, w))
        means, chol_px = rep._pixel_params(H, W, (sh, sw))

    def close(ours, ref):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))

    close(colour, tensors["output.colour"])
    close(offset, tensors["output.offset"])
    close(scaled_cholesky(chol, sh, sw, model.l21_scale), tensors["output.chol"])
    close(chol_px, tensors["output.chol"])
    close(means, tensors["output.means"])
    close(field_means(offset, h, w) - torch.tensor([1 / W, 1 / H]), tensors["output.means"])


def test_offset_input_flag_matters(heads_state):
    tensors, _ = _load("continuoussr_heads_head_5x7")
    fmap = F.pixel_unshuffle(tensors["input.feat"], 2)
    offs = []
    for flag in ("lrelu", "raw"):
        m = _model(flag)
        m.load_state_dict(heads_state, strict=False)
        with torch.no_grad():
            offs.append(m.heads(fmap)[2])
    assert (offs[0] - offs[1]).abs().max() > 1e-3
    torch.testing.assert_close(offs[0], tensors["output.offset"], rtol=1e-5, atol=1e-6)


def test_dictionary_values():
    d = gaussian_dictionary()
    assert d.shape == (730, 3) and d.dtype == torch.float32
    assert d[-1].abs().sum() == 0
    assert d[0].tolist() == [0.0, pytest.approx(-0.86), 0.0]
    assert d[1].tolist() == [0.0, pytest.approx(-0.86), pytest.approx(0.33)]
    assert d[9].tolist() == [0.0, pytest.approx(-0.36), 0.0]
    assert d[81, 0] == torch.tensor(0.41)  # float32 rounding of the published value
    assert torch.equal(d[:729].amax(0), torch.tensor([2.36, 1.54, 2.23]))


def test_parameter_count_and_keys():
    m = _model()
    heads = {k: v for k, v in m.state_dict().items() if not k.startswith("encoder.")}
    assert sum(v.numel() for v in heads.values()) == 4_021_957
    assert heads["conv1.weight"].shape == (512, 256, 3, 3)
    assert heads["mlp.layers.10.weight"].shape == (3, 64)
    assert heads["mlp_offset.layers.10.weight"].shape == (2, 64)
    assert heads["mlp_vector.layers.8.weight"].shape == (512, 512)


def test_head_width_narrows_every_head_and_travels_with_the_weights(tmp_path):
    from gblsr.checkpoint import load_model, save_model

    m = _model(head_width=0.25)
    sd = m.state_dict()
    assert sd["conv1.weight"].shape == (128, 256, 3, 3)
    assert sd["mlp_vector.layers.8.weight"].shape == (128, 128)
    assert sd["mlp.layers.0.weight"].shape == (128, 256)
    assert sd["mlp.layers.2.weight"].shape == (256, 128)
    assert sd["mlp_offset.layers.10.weight"].shape == (2, 16)
    save_model(m, tmp_path / "narrow.safetensors")
    back = load_model(tmp_path / "narrow.safetensors")
    assert back.get_config()["head_width"] == 0.25
    lr = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(back.encode(lr).render(11, 13), m.encode(lr).render(11, 13))
    # A config written before head_width existed builds the official widths.
    old = {k: v for k, v in _model().get_config().items() if k != "head_width"}
    assert ContinuousSR.from_config(old).conv1.weight.shape == (512, 256, 3, 3)
    for bad in (0, -1.0, "half"):
        with pytest.raises(ValueError, match="head_width"):
            ContinuousSR(head_width=bad)


def test_batch_is_per_image_and_regions_agree():
    m = _model()
    lr = torch.rand(2, 3, 6, 5)
    with torch.no_grad():
        rep = m.encode(lr)
        both = rep.render(15, 13)
        one = m.encode(lr[1:]).render(15, 13)
        win = rep.render_region(4, 3, 9, 7, 15, 13)
        tiled = rep.render(15, 13, max_pixels=40)
    torch.testing.assert_close(both[1:], one, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(win, both[:, :, 4:13, 3:10], rtol=0, atol=0)
    torch.testing.assert_close(tiled, both, rtol=0, atol=0)


def test_tile_cap_option_and_config():
    m = _model(tile_cap=256)
    assert m.get_config()["tile_cap"] == 256
    lr = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        rep = m.encode(lr)
        capped = rep.render(10, 10)  # x1: every tile is over the cap
        full = rep.render(10, 10, tile_cap=None)
    assert (capped - full).abs().max() > 1e-3
    with pytest.raises(TypeError, match="unknown render options"):
        rep.render(10, 10, cell_clip=4)


def test_query_equals_field_without_tile_boxes():
    m = _model()
    lr = torch.rand(2, 3, 5, 6)
    with torch.no_grad():
        rep = m.encode(lr)
        H, W = 20, 24
        full = rep.render(H, W)
        ys = (2 * torch.arange(H) + 1) / H - 1
        xs = (2 * torch.arange(W) + 1) / W - 1
        coord = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(1, -1, 2)
        q = rep.query(coord.expand(2, -1, -1)).reshape(2, H, W, 3).permute(0, 3, 1, 2)
        # Brute force over every Gaussian at a few random points (LR-pixel units).
        pts = torch.rand(2, 7, 2) * 2 - 1
        brute = _brute_query(rep, pts)
        torch.testing.assert_close(rep.query(pts), brute, rtol=1e-5, atol=1e-6)
    # Pixel centres: equal except where the raster's 16x16 tile boxes cut a footprint.
    assert float(((q - full).abs() > 1e-4).float().mean()) < 0.02


def _brute_query(rep, coord):
    h, w = rep.input_size
    uy = (coord[..., 0] + 1) * h / 2
    ux = (coord[..., 1] + 1) * w / 2
    mx = (rep.means[..., 0] + 1) * w / 2
    my = (rep.means[..., 1] + 1) * h / 2
    L = rep.chol / 4
    out = torch.zeros(coord.shape[0], coord.shape[1], 3)
    for b in range(coord.shape[0]):
        for n in range(rep.means.shape[1]):
            l11, l21, l22 = L[b, n].double()
            S = torch.stack(
                [
                    torch.stack([l11 * l11, l11 * l21]),
                    torch.stack([l11 * l21, l21 * l21 + l22 * l22]),
                ]
            )
            if torch.det(S) == 0:
                continue
            d = torch.stack([mx[b, n] - ux[b], my[b, n] - uy[b]], -1).double()
            sigma = 0.5 * ((d @ torch.linalg.inv(S)) * d).sum(-1)
            a = torch.exp(-sigma).clamp(max=1)
            a = torch.where((sigma >= 0) & (a >= 1 / 255), a, 0.0)
            out[b] += a[:, None].float() * rep.colour[b, n]
    return out


def test_second_scale_reuses_the_field():
    m = _model()
    calls = []
    m.mlp.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        rep = m.encode(torch.rand(1, 3, 4, 4))
        rep.render(8, 8)
        rep.render(13, 11)
    assert len(calls) == 1


def test_training_forward_has_gradients():
    m = _model().train()
    out = m(torch.rand(2, 3, 4, 5), (12, 15))
    assert out.shape == (2, 3, 12, 15)
    out.mean().backward()
    assert m.mlp.layers[0].weight.grad.abs().sum() > 0
    assert m.conv1.weight.grad.abs().sum() > 0
    assert m.mlp_offset.layers[0].weight.grad.abs().sum() > 0


def test_wrong_encoder_is_a_user_error():
    m = ContinuousSR(encoder="edsr", encoder_cfg={"num_blocks": 1, "num_features": 64})
    with pytest.raises(UserInputError, match="64 channels at x4"):
        m.encode(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="offset_input"):
        ContinuousSR(offset_input="gelu")


def test_save_load_roundtrip(tmp_path):
    from gblsr.checkpoint import load_model, save_model

    m = _model(offset_input="raw", tile_cap=256)
    save_model(m, tmp_path / "c.safetensors")
    back = load_model(tmp_path / "c.safetensors")
    assert back.get_config() == m.get_config()
    lr = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(back.encode(lr).render(9, 9), m.encode(lr).render(9, 9))


def test_trainer_call_picks_pixels_of_the_whole_render():
    """forward(lr, coord, cell) (the kind: sr trainer's call) == the whole render's pixels,
    per sample size, with gradients."""
    m = _model().train()
    lr = torch.rand(3, 3, 3, 4)
    sizes = [(9, 12), (7, 9), (9, 12)]
    coords, cells = [], []
    g = torch.Generator().manual_seed(0)
    for H, W in sizes:
        idx = torch.randperm(H * W, generator=g)[:30]
        r, c = idx // W, idx % W
        coords.append(torch.stack([(2 * r + 1) / H - 1, (2 * c + 1) / W - 1], -1))
        cells.append(torch.tensor([2 / H, 2 / W]).expand(30, 2))
    pred = m(lr, torch.stack(coords), torch.stack(cells))
    assert pred.shape == (3, 30, 3)
    pred.square().mean().backward()
    assert m.mlp.layers[0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        for b, (H, W) in enumerate(sizes):
            full = m(lr[b : b + 1], (H, W))[0]
            r = ((coords[b][:, 0] + 1) * H / 2).floor().long()
            c = ((coords[b][:, 1] + 1) * W / 2).floor().long()
            torch.testing.assert_close(pred[b].detach(), full[:, r, c].t(), rtol=1e-5, atol=1e-6)
