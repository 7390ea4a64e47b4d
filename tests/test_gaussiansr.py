"""GaussianSR (``gblsr.peers.gaussiansr``): equality with the official code, rendering invariants,
selection modes, quirk options, official checkpoints.

``tests/fixtures/peers/gaussiansr/gaussiansr.safetensors`` was written by
``tests/fixtures/generate_gaussiansr_fixtures.py`` from tljxyys/GaussianSR @ ef5a38d (seeded
random weights, a seeded Gumbel stream, the official test path with chunked queries). Our model
is built from the official state dict through our converter and, with a ``torch.Generator``
seeded like the official global RNG, must give

    max |ours - official| <= 1e-5 * max |official|

through ``predict_full``, ``encode().render()``, tiled rendering and windows.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from gblsr.errors import UserInputError
from gblsr.peers.convert import convert_official
from gblsr.peers.gaussiansr import GaussianSR
from gblsr.peers.gaussiansr_render import kernel_canvases, resize_window
from gblsr.registry import create_model

FIXTURE = (
    Path(__file__).resolve().parent / "fixtures" / "peers" / "gaussiansr" / "gaussiansr.safetensors"
)
CASES = ("b1_14x14", "b2_11x9")
REL_TOL = 1e-5
OFFICIAL_COMMIT = "ef5a38dcc5cff0c88766c6c93040bad57b994032"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Many small ops: on shared cores, intra-op threads cost far more than they give.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.cache
def _load():
    with safe_open(str(FIXTURE), framework="pt") as f:
        meta = json.loads(f.metadata()["gaussiansr"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, tensors


@functools.cache
def _fixture(name: str):
    """(case, tensors) of one input: ``input.lr``, ``input.fwd.coord`` / ``.cell``, the
    outputs under their call keys and the shared ``state.*``."""
    meta, t = _load()
    case = {**meta["cases"][name], "repo": meta["repo"], "commit": meta["commit"]}
    case["spec"] = meta["official_spec"]
    view = {k: v for k, v in t.items() if k.startswith(("state.", "output."))}
    view["input.lr"] = t[f"input.{name}.lr"]
    view["input.fwd.coord"] = t[f"input.{name}.fwd.coord"]
    view["input.fwd.cell"] = t[f"input.{name}.fwd.cell"]
    return case, view


def _official_spec(name: str) -> dict:
    case, t = _fixture(name)
    sd = {k[len("state.") :]: v for k, v in t.items() if k.startswith("state.")}
    return {"name": case["spec"]["name"], "args": case["spec"]["args"], "sd": sd}


def _model(name: str, **override) -> GaussianSR:
    arch, cfg, sd = convert_official(_official_spec(name))
    model = create_model(arch, **{**cfg, **override})
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _close(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape
    err = (out - ref).abs().max().item() / ref.abs().max().item()
    assert err <= REL_TOL, f"relative error {err:.3g}"


def _calls(kind: str):
    out = []
    for name in CASES:
        case, _ = _fixture(name)
        out += [(name, c) for c in case["calls"] if c["method"] == kind]
    return out


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_fixture_provenance():
    assert FIXTURE.stat().st_size < 600_000  # small: one reduced model, two inputs
    for name in CASES:
        case, _ = _fixture(name)
        assert case["repo"] == "tljxyys/GaussianSR" and case["commit"] == OFFICIAL_COMMIT
        scales = sorted(c["scale"] for c in case["calls"] if c["method"] == "predict_full")
        assert scales == [2.0, 2.5, 3.0, 4.0, 6.0]


@pytest.mark.parametrize("name,call", _calls("predict_full"), ids=lambda v: str(v)[:40])
def test_equals_official_test_path(name, call):
    case, t = _fixture(name)
    model, lr, ref = _model(name), t["input.lr"], t[f"output.{call['key']}.pred"]
    H, W, s, seed = call["H"], call["W"], call["scale"], call["gumbel_seed"]
    _close(model.predict_full(lr, H, W, generator=_gen(seed), scale=s), ref)
    with torch.no_grad():
        rep = model.encode(lr, generator=_gen(seed))
        _close(rep.render(H, W, scale=s), ref)
        _close(rep.render(H, W, max_pixels=97, scale=s), ref)  # tiles of odd shapes
        win = rep.render_region(3, 5, H - 7, W - 9, H, W, scale=s)
        _close(win, ref[..., 3 : H - 4, 5 : W - 4])


@pytest.mark.parametrize("name,call", _calls("forward"), ids=lambda v: str(v)[:40])
def test_equals_official_training_forward(name, call):
    _, t = _fixture(name)
    model = _model(name).train()
    model.generator = _gen(call["gumbel_seed"])
    coord, cell = t["input.fwd.coord"], t["input.fwd.cell"]
    with torch.no_grad():
        out = model(t["input.lr"], coord, cell, scale=call["scale"])
    _close(out, t[f"output.{call['key']}.pred"])


def test_default_scale_is_H_over_h_and_cell_derived_scale():
    model = _model("b2_11x9")
    case, t = _fixture("b2_11x9")
    lr = t["input.lr"]
    call = next(c for c in case["calls"] if c.get("scale") == 4.0)
    ref, seed = t[f"output.{call['key']}.pred"], call["gumbel_seed"]  # 44 x 36
    _close(model.predict_full(lr, 44, 36, generator=_gen(seed)), ref)
    # query() at pixel centres with the cells of a 44 x 36 render equals the render
    with torch.no_grad():
        rep = model.encode(lr, generator=_gen(seed))
        ys = (torch.arange(44) * 2 + 1) / 44 - 1
        xs = (torch.arange(36) * 2 + 1) / 36 - 1
        coord = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).view(1, -1, 2)
        coord = coord.expand(2, -1, -1)
        cell = torch.tensor([2 / 44, 2 / 36]).expand(2, 44 * 36, 2)
        pts = rep.query(coord, cell)
    _close(pts.view(2, 44, 36, 3).permute(0, 3, 1, 2), ref)


def test_parameter_count_and_keys_of_official_configuration():
    model = create_model("gaussiansr")
    assert sum(p.numel() for p in model.parameters()) == 1_838_159
    sd = model.state_dict()
    assert sd["encoder.sub_mean.weight"].shape == (3, 3, 1, 1)  # unused, kept for checkpoints
    assert sd["classifier.weight"].shape == (100, 64, 3, 3)
    assert sd["dec.layers.8.weight"].shape == (3, 256)
    assert isinstance(model.dec.layers[1], torch.nn.GELU)


def test_selection_modes():
    model = _model("b1_14x14")
    lr = _fixture("b1_14x14")[1]["input.lr"]
    a = model.predict_full(lr, 28, 28, generator=_gen(1))
    b = model.predict_full(lr, 28, 28, generator=_gen(1))
    c = model.predict_full(lr, 28, 28, generator=_gen(2))
    assert torch.equal(a, b) and not torch.allclose(a, c, atol=1e-3)
    meta = model.set_selection("argmax")
    assert meta == {"selection": "argmax", "gumbel_seed": None}
    d, e = model.predict_full(lr, 28, 28), model.predict_full(lr, 28, 28, generator=_gen(9))
    assert torch.equal(d, e)
    sel = model.encode_state(lr)["sel"]
    assert torch.equal(sel.argmax(1), model.classifier(model.encoder(lr * 2 - 1)).argmax(1))
    assert model.set_selection("gumbel", seed=4) == {"selection": "gumbel", "gumbel_seed": 4}
    f = model.predict_full(lr, 28, 28)
    model.set_selection(seed=4)
    assert torch.equal(f, model.predict_full(lr, 28, 28))
    with pytest.raises(UserInputError, match="selection must be one of"):
        model.set_selection("softmax")
    model.train()
    soft = model.encode_state(lr, generator=_gen(0))["sel"]
    assert soft.min() > 0 and torch.allclose(soft.sum(1), torch.ones(1), atol=1e-5)


def test_per_image_kernels_make_images_independent():
    _, t = _fixture("b2_11x9")
    lr = t["input.lr"]
    for per_image in (False, True):
        model = _model("b2_11x9", per_image_kernels=per_image, selection="argmax")
        both = model.predict_full(lr, 33, 27)
        alone = model.predict_full(lr[1:], 33, 27)
        same = torch.allclose(both[1:], alone, rtol=0, atol=1e-5)
        assert same == per_image  # official: batch-mean kernels couple the images


def test_per_sample_scale_renders_each_sample_at_its_own_scale():
    _, t = _fixture("b2_11x9")
    lr = t["input.lr"]
    coord = torch.rand(2, 40, 2) * 1.8 - 0.9
    cells = torch.tensor([[2 / 22, 2 / 18], [2 / 44, 2 / 36]]).view(2, 1, 2).expand(2, 40, 2)
    for per in (False, True):
        model = _model("b2_11x9", per_sample_scale=per, per_image_kernels=True)
        model.set_selection("argmax")
        with torch.no_grad():
            out = model(lr, coord, cells)
            second = model(lr[1:], coord[1:], cells[1:])
        assert torch.allclose(out[1:], second, atol=1e-5) == per  # official: sample 0's scale


def _centroid_cols(canvas: torch.Tensor) -> torch.Tensor:
    x = torch.arange(canvas.shape[-1], dtype=canvas.dtype)
    return (canvas.sum(-2) * x).sum(-1) / canvas.sum((-2, -1))


@pytest.mark.parametrize("side", [14, 18, 21, 28])
def test_translation_grid_official_and_centred(side):
    # A narrow (near-delta) kernel: its centroid sits where the grid puts the Gaussian.
    k = torch.zeros(1, 49, 5, 5)
    k[..., 2, 2] = 1.0
    c = torch.arange(1, 6, dtype=torch.float32)  # columns 0 and 6 are cut at the canvas edge
    off = kernel_canvases(k, 7, side).view(7, 7, side, side)[0, 1:6]
    expect = c * (side - 1) / 7 - 0.5 * (side % 2 == 0)
    assert torch.allclose(_centroid_cols(off), expect, atol=1e-4)
    cen = kernel_canvases(k, 7, side, centred=True).view(7, 7, side, side)[0, 1:6]
    assert torch.allclose(_centroid_cols(cen), (c + 0.5) * side / 7 - 0.5, atol=1e-4)


def test_windowed_bicubic_equals_interpolate():
    x = torch.randn(2, 3, 17, 23)
    for out_size in [(40, 51), (17, 23), (9, 11), (68, 92)]:
        ref = F.interpolate(x, size=out_size, mode="bicubic", align_corners=False)
        got = resize_window(
            lambda r0, r1, c0, c1: x[..., r0:r1, c0:c1],
            (17, 23),
            out_size,
            (1, out_size[0] - 1),
            (2, out_size[1]),
            x.dtype,
            x.device,
        )
        assert torch.allclose(got, ref[..., 1 : out_size[0] - 1, 2:], atol=2e-6)


def test_centred_grid_changes_output_and_float64_runs():
    _, t = _fixture("b1_14x14")
    lr = t["input.lr"]
    a = _model("b1_14x14", selection="argmax").predict_full(lr, 42, 42)
    b = _model("b1_14x14", selection="argmax", centred_grid=True).predict_full(lr, 42, 42)
    assert (a - b).abs().max() > 1e-3
    m64 = _model("b1_14x14", selection="argmax").double()
    c = m64.predict_full(lr.double(), 42, 42)
    assert c.dtype == torch.float64 and torch.allclose(c.float(), a, atol=1e-5)


def test_user_errors():
    model = _model("b1_14x14")
    lr = _fixture("b1_14x14")[1]["input.lr"]
    with pytest.raises(UserInputError, match="needs scale >= 0.714"):
        model.predict_full(lr, 7, 7)
    with pytest.raises(UserInputError, match="needs more than splat_channels=8"):
        create_model("gaussiansr", encoder_cfg={"num_blocks": 1, "num_features": 8})
    with pytest.raises(UserInputError, match="selection must be one of"):
        create_model("gaussiansr", selection="max")
    with pytest.raises(ValueError, match="not inside"):
        model.encode(lr).render_region(0, 0, 29, 5, 28, 28)


# --------------------------------------------------------------------------- official files

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _official_keys(sd: dict) -> dict:
    """Our state dict -> the official key names (the converter's inverse)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("classifier."):
            k = "encoder.segmentation_head.0." + k[len("classifier.") :]
        elif k.startswith("encoder."):
            k = "encoder.edsr." + k[len("encoder.") :]
        out[k] = v
    return out


def _save_official(path: Path, spec: dict) -> Path:
    torch.save(
        {"model": spec, "optimizer": {"name": "adam", "args": {}, "sd": {}}, "epoch": 3}, path
    )
    return path


def test_official_checkpoint_loads_and_converts(tmp_path):
    from gblsr import load_model
    from gblsr.cli.convert import main as convert_main

    case, t = _fixture("b2_11x9")
    call = next(c for c in case["calls"] if c.get("scale") == 2.5)
    ref, lr = t[f"output.{call['key']}.pred"], t["input.lr"]
    src = _save_official(tmp_path / "epoch-last.pth", _official_spec("b2_11x9"))
    dst = tmp_path / "gsr.safetensors"
    assert convert_main([str(src), str(dst)]) == 0
    for path in (src, dst):
        model = load_model(path)
        assert model.registry_name == "gaussiansr" and model.selection == "gumbel"
        out = model.predict_full(lr, call["H"], call["W"], generator=_gen(call["gumbel_seed"]),
                                 scale=call["scale"])  # fmt: skip
        _close(out, ref)


def test_official_configuration_checkpoint_with_meanshift(tmp_path):
    from gblsr import load_model

    ours = create_model("gaussiansr")
    sd = _official_keys(ours.state_dict())
    assert "encoder.edsr.sub_mean.weight" in sd and "encoder.edsr.add_mean.bias" in sd
    args = {
        "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}},
        "dec_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256] * 4}},
        "kernel_size": 5,
    }
    path = _save_official(
        tmp_path / "full.pth", {"name": "gaussian-splatter", "args": args, "sd": sd}
    )
    model = load_model(path)
    assert sum(p.numel() for p in model.parameters()) == 1_838_159
    assert model.get_config() == {**ours.get_config(), "selection": "gumbel"}
    bad = {
        "name": "gaussian-splatter",
        "args": {**args, "dec_spec": {"name": "mlp", "args": {"act": "relu"}}},
        "sd": sd,
    }
    from gblsr.errors import CheckpointError

    with pytest.raises(CheckpointError, match="activation 'relu' is not supported"):
        convert_official(bad)


@pytest.mark.skipif(not (SHARED / "data/benchmark/Set5").is_dir(), reason="../shared absent")
@pytest.mark.parametrize("selection", ["gumbel", "argmax"])
def test_eval_cli_on_set5_reports_selection(tmp_path, capsys, selection):
    from gblsr.cli.eval import main as eval_main

    src = _save_official(tmp_path / "epoch-last.pth", _official_spec("b1_14x14"))
    argv = ["--checkpoint", str(src), "--dataset", str(SHARED / "data/benchmark/Set5")]
    argv += ["--scale", "3", "--max-images", "1", "--no-lpips", "--selection", selection]
    assert eval_main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["selection"] == selection
    assert res["gumbel_seed"] == (0 if selection == "gumbel" else None)
    row = res["rows"][0]
    assert row["n_images"] == 1 and 5 < row["psnr"] < 60
    assert eval_main(argv) == 0  # seeded: the same numbers again
    assert json.loads(capsys.readouterr().out)["rows"][0]["psnr"] == row["psnr"]


def test_training_forward_backpropagates_into_the_bank_and_classifier():
    model = _model("b2_11x9", per_sample_scale=True).train()
    model.generator = _gen(0)
    lr = _fixture("b2_11x9")[1]["input.lr"]
    coord = torch.rand(2, 30, 2) * 1.8 - 0.9
    cells = torch.tensor([[2 / 25, 2 / 20], [2 / 37, 2 / 30]]).view(2, 1, 2).expand(2, 30, 2)
    out = model(lr, coord, cells)
    assert out.shape == (2, 30, 3)
    out.sum().backward()
    for p in (model.sigma_x, model.sigma_y, model.opacity, model.rho, model.classifier.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_other_encoder_and_config_round_trip():
    enc = {"num_features": 16, "growth_rate": 8, "num_rdbs": 2, "num_layers_per_rdb": 2}
    model = create_model("gaussiansr", encoder="rdn", encoder_cfg=enc, hidden_dim=32, hidden=[32])
    again = create_model("gaussiansr", **model.get_config())
    again.load_state_dict(model.state_dict())
    lr = torch.rand(1, 3, 10, 13)
    a = model.eval().predict_full(lr, 30, 39, generator=_gen(0))
    assert a.shape == (1, 3, 30, 39)
    assert torch.equal(a, again.eval().predict_full(lr, 30, 39, generator=_gen(0)))
