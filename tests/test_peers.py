"""Peer models (LIIF, LTE, LM-LIIF, LM-LTE): sizes, official checkpoint files, the encode/render
interface, CMSR options, the gblsr-convert / gblsr-cmsr / gblsr-eval commands.

Numerical equality with the official code is in test_peers_equivalence.py.
"""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _helpers import TINY_RDN, write_png
from safetensors import safe_open

import gblsr
from gblsr.checkpoint import build_from_state_dict
from gblsr.errors import CheckpointError, UserInputError
from gblsr.peers import LIIF, LMLIIF, LMLTE, LTE, cmsr
from gblsr.peers.convert import convert_official

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "peers"
TINY_EDSR = {"num_blocks": 1, "num_features": 8}
# Small decoders, so the API tests stay fast.
SMALL = {
    LIIF: {"hidden": [16, 16]},
    LTE: {"hidden_dim": 16, "hidden": [16, 16]},
    LMLIIF: {"hypernet_hidden": [16]},
    LMLTE: {"lte_dim": 16, "hypernet_hidden": [16]},
}

# Parameter counts of the official models (parameters(), the frozen EDSR mean shifts included).
OFFICIAL_COUNTS = {
    ("liif", "edsr"): 1_567_323,
    ("lte", "edsr"): 1_714_267,
    ("lmliif", "edsr"): 1_386_091,
    ("lmlte", "edsr"): 1_490_907,
    ("liif", "rdn"): 22_320_835,
    ("lte", "rdn"): 22_467_779,
    ("lmliif", "rdn"): 21_973_952 + 165_651,
    ("lmlte", "rdn"): 21_973_952 + 270_467,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-off costs on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fixture(name: str):
    with safe_open(str(FIXTURES / f"{name}.safetensors"), framework="pt") as f:
        case = json.loads(f.metadata()["case"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    sd = collections.OrderedDict(
        (k[len("state.") :], v) for k, v in tensors.items() if k.startswith("state.")
    )
    return case, tensors, sd


def write_official_pth(path: Path, name: str, extra_args: dict | None = None) -> tuple[dict, dict]:
    """An official-format file (model spec + optimizer + epoch) from a fixture's weights."""
    case, tensors, sd = _fixture(name)
    args = {**case["spec"]["args"], "cmsr_spec": None, **(extra_args or {})}
    optimizer = {
        "name": "adam",
        "args": {"lr": 1e-4},
        "sd": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"params": [0]}]},
    }
    torch.save(
        {
            "model": {"name": case["spec"]["name"], "args": args, "sd": sd},
            "optimizer": optimizer,
            "epoch": 3,
        },
        path,
    )
    return case, tensors


# --------------------------------------------------------------------------- sizes and keys


@pytest.mark.parametrize("arch, encoder", sorted(OFFICIAL_COUNTS), ids=lambda v: str(v))
def test_parameter_counts_equal_the_official_models(arch, encoder):
    with torch.device("meta"):
        model = gblsr.create_model(arch, encoder=encoder)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_COUNTS[(arch, encoder)]


def test_state_dict_layout_of_the_official_edsr_baseline_models():
    with torch.device("meta"):
        liif, lte = LIIF(), LTE()
    keys = list(liif.state_dict())
    assert len(keys) == 82 and len(lte.state_dict()) == 85
    assert keys[:4] == [
        "encoder.sub_mean.weight",
        "encoder.sub_mean.bias",
        "encoder.add_mean.weight",
        "encoder.add_mean.bias",
    ]
    assert "encoder.body.15.body.2.weight" in keys and "encoder.body.16.bias" in keys
    assert tuple(liif.state_dict()["imnet.layers.0.weight"].shape) == (256, 580)
    assert tuple(lte.state_dict()["phase.weight"].shape) == (128, 2)
    # the mean shifts are parameters (counted) but frozen
    assert not liif.encoder.sub_mean.weight.requires_grad


def test_any_encoder_works_with_any_decoder():
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 5, 6)
    for cls in (LIIF, LTE, LMLIIF, LMLTE):
        for enc, cfg in (("edsr", TINY_EDSR), ("rdn", TINY_RDN)):
            model = cls(encoder=enc, encoder_cfg=cfg, **SMALL[cls]).eval()
            assert model.predict_full(lr, 11, 13).shape == (1, 3, 11, 13)
            again = gblsr.create_model(model.registry_name, **model.get_config())
            assert again.get_config() == model.get_config()


# --------------------------------------------------------------------------- official files


@pytest.mark.parametrize("name", ["liif_edsr", "lteplus_edsr", "lmlte_edsr"])
def test_load_model_reads_official_pth_files(tmp_path, name):
    path = tmp_path / f"{name}.pth"
    # unknown extra args (an old LMF flag) are ignored
    case, tensors = write_official_pth(path, name, {"mixed_le": True})
    model = gblsr.load_model(path)
    call = next(c for c in case["calls"] if c["name"] == "full_x4_b1_6x5")
    out = model.predict_full(tensors[call["inputs"]["lr"]], call["H"], call["W"])
    ref = tensors[call["outputs"]["pred"]]
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()

    # ... and gblsr-convert writes them as self-describing safetensors files
    from gblsr.cli.convert import main as convert

    dst = tmp_path / "converted.safetensors"
    assert convert([str(path), str(dst)]) == 0
    again = gblsr.load_model(dst)
    assert again.registry_name == model.registry_name
    assert torch.equal(again.predict_full(tensors[call["inputs"]["lr"]], call["H"], call["W"]), out)


def test_converter_rejects_what_it_cannot_build():
    _, _, sd = _fixture("liif_edsr")
    spec = {"name": "liif", "args": {"encoder_spec": {"name": "rcan", "args": {}}}, "sd": sd}
    with pytest.raises(CheckpointError, match="rcan"):
        convert_official(spec)
    with pytest.raises(CheckpointError, match="metasr"):
        convert_official({**spec, "name": "metasr"})
    edsr = {"name": "edsr-baseline", "args": {}}
    with pytest.raises(CheckpointError, match="upsampler"):
        convert_official({"name": "lte", "args": {"encoder_spec": edsr}, "sd": sd})


def test_full_edsr_and_rdn_a_encoder_specs():
    arch, cfg, _ = convert_official(
        {
            "name": "liif",
            "args": {
                "encoder_spec": {"name": "edsr", "args": {"no_upsampling": True}},
                "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256] * 4}},
            },
            "sd": {},
        }
    )
    assert cfg["encoder_cfg"] == {"num_blocks": 32, "num_features": 256, "res_scale": 0.1}
    _, cfg, _ = convert_official(
        {
            "name": "lte",
            "args": {
                "encoder_spec": {"name": "rdn", "args": {"RDNconfig": "A", "no_upsampling": True}},
                "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256] * 3}},
            },
            "sd": {},
        }
    )
    assert cfg["encoder_cfg"]["num_rdbs"] == 20 and cfg["encoder_cfg"]["growth_rate"] == 32


# --------------------------------------------------------------------------- encode / render


@pytest.fixture(scope="module")
def lmlte():
    case, tensors, sd = _fixture("lmlte_edsr")
    arch, cfg, sd = convert_official({**case["spec"], "sd": sd})
    return build_from_state_dict(arch, cfg, sd).eval(), tensors


@pytest.mark.parametrize("cls", [LIIF, LTE, LMLIIF])
def test_render_region_rows_and_queries_agree_with_the_full_render(cls):
    torch.manual_seed(1)
    model = cls(encoder_cfg=TINY_EDSR, **SMALL[cls]).eval()
    lr = torch.rand(2, 3, 5, 4)
    H, W = 23, 17  # x4.6 / x4.25: clipped cells for LTE and LMF
    with torch.no_grad():
        rep = model.encode(lr)
        full = rep.render(H, W)
        assert torch.equal(full, model.predict_full(lr, H, W))
        region = rep.render_region(3, 5, 7, 9, H, W)
        assert torch.allclose(region, full[..., 3:10, 5:14], rtol=0, atol=1e-6)
        bands = list(rep.iter_rows(H, W, max_pixels=3 * W))
        assert [top for top, _ in bands] == list(range(0, H, 3))
        assert torch.allclose(torch.cat([b for _, b in bands], dim=2), full, atol=1e-6)
        from gblsr.peers._common import full_grid

        factor = model.test_cell_factor(5, 4, H, W)
        coord, cell = full_grid(2, H, W, factor, lr.dtype, lr.device)
        pts = rep.query(coord[:, ::7], cell[:, ::7])
        ref = full.permute(0, 2, 3, 1).reshape(2, -1, 3)[:, ::7]
        assert torch.allclose(pts, ref, atol=1e-6)


@pytest.mark.parametrize("cls", [LIIF, LTE, LMLIIF, LMLTE])
def test_training_forward_backpropagates(cls):
    torch.manual_seed(2)
    model = cls(encoder_cfg=TINY_EDSR, **SMALL[cls]).train()
    lr = torch.rand(2, 3, 6, 6)
    coord = torch.rand(2, 36, 2) * 2 - 1
    cell = torch.full((2, 36, 2), 2 / 15)
    out = model(lr, coord, cell)
    assert out.shape == (2, 36, 3)
    out.abs().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_cell_clip_is_the_repository_rule():
    assert LIIF().cell_clip is None and LTE().cell_clip == 4 and LMLIIF().cell_clip == 4
    m = LTE(encoder_cfg=TINY_EDSR, **SMALL[LTE]).eval()
    assert m.test_cell_factor(4, 5, 48, 60) == 3  # x12: cell * 12 / 4
    assert m.test_cell_factor(4, 5, 16, 20) == 1
    lr = torch.rand(1, 3, 4, 5)
    a = m.predict_full(lr, 48, 60)
    b = m.predict_full(lr, 48, 60, cell_clip=None)
    assert not torch.equal(a, b)


# --------------------------------------------------------------------------- CMSR


def test_cmsr_tables_load_from_the_official_yaml_layout(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(
        "  6:\n    1: 0.32\n    2: 0.41\n    4: 0.55\n    6: 1\n  12:\n    1: 0.3\n    12: 1\n"
    )
    tables = cmsr.load_tables(p)
    assert tables == {6: {1: 0.32, 2: 0.41, 4: 0.55, 6: 1}, 12: {1: 0.3, 12: 1}}
    assert cmsr.select_table(tables, 5) is tables[6]
    assert cmsr.select_table(tables, 8) is tables[12]
    assert cmsr.select_table(tables, 30) is tables[12]  # none >= 30: the last
    with pytest.raises(UserInputError):
        cmsr.load_tables({6: {1: "x"}})
    with pytest.raises(UserInputError):
        cmsr.load_tables(tmp_path / "missing.yaml")
    cmsr.save_tables(tables, tmp_path / "out.yaml")
    assert cmsr.load_tables(tmp_path / "out.yaml") == tables


def test_cmsr_batches_run_image_by_image(lmlte):
    model, _ = lmlte
    torch.manual_seed(3)
    lr = torch.rand(2, 3, 4, 5)
    table = {12: {1: 0.12, 2: 0.155, 4: 0.215, 6: 1, 12: 1}}
    both = model.predict_full(lr, 48, 60, cmsr=table)
    one = model.predict_full(lr[1:], 48, 60, cmsr=table)
    assert torch.allclose(both[1:], one, atol=1e-6)
    plain = model.predict_full(lr, 48, 60)
    assert not torch.allclose(both, plain, atol=1e-3)  # CMSR did render coarser levels
    # at x4 and below CMSR never runs
    assert torch.equal(model.predict_full(lr, 16, 20, cmsr=table), model.predict_full(lr, 16, 20))


def test_cmsr_exact_grid_option_changes_only_level_grids(lmlte):
    model, _ = lmlte
    torch.manual_seed(4)
    lr = torch.rand(1, 3, 5, 4)
    table = {6: {1: 0.12, 2: 0.15, 4: 0.215, 6: 1}}
    official = model.predict_full(lr, 30, 24, cmsr=table)
    exact = model.predict_full(lr, 30, 24, cmsr=table, cmsr_exact_grid=True)
    assert official.shape == exact.shape and not torch.equal(official, exact)
    # only pixels that depend on a level grid's border rows/columns change
    diff = (official - exact).abs().amax(dim=(0, 1))
    assert diff[10:20, 8:16].max() < diff.max()


def test_cmsr_empty_last_level_is_completed(lmlte):
    """Official: with nothing left for the last level the function returns a coarser image;
    we resample the last non-empty level to the output pixels."""
    model, _ = lmlte
    torch.manual_seed(5)
    lr = torch.rand(1, 3, 4, 5)
    H, W = 48, 60
    table = {12: {1: 0.99}}  # x1 takes every pixel; the appended x12 level (>= 0.99) is empty
    with torch.no_grad():
        rep = model.encode(lr)
        mm = model.mod_mean(model.modulations(rep, torch.full((1, 1, 2), 2 / 16)))
        assert mm.max() < 0.99
        out = model.predict_full(lr, H, W, cmsr=table)
        # by hand: the x1 level at the (interpolated = exact at x1) LR centres, then bilinear
        from gblsr.peers._common import full_grid

        factor = model.test_cell_factor(4, 5, H, W)
        coord, cell = full_grid(1, H, W, factor, lr.dtype, lr.device)
        mods = model.modulations(rep, cell)
        c1, cell1 = full_grid(1, 4, 5, 1, lr.dtype, lr.device)
        x1 = model.query_modulated(rep, mods, c1, cell1).view(1, 4, 5, 3).permute(0, 3, 1, 2)
        up = F.grid_sample(
            x1,
            coord.flip(-1).unsqueeze(1),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )[:, :, 0, :]
        ref = (up * 0.5 + 0.5).view(1, 3, H, W)
    assert torch.allclose(out, ref, atol=1e-6)


def test_build_table_and_gblsr_cmsr_command(tmp_path, lmlte):
    model, _ = lmlte
    torch.manual_seed(6)
    hr = [torch.randint(0, 256, (3, 30, 36), dtype=torch.uint8)]
    tables = cmsr.build_table(model, hr, 6, mse_threshold=1e-3)
    assert list(tables) == [6] and list(tables[6]) == [1, 1.5, 2, 3, 4, 6]
    values = list(tables[6].values())
    assert values == sorted(values) and all(0 <= v <= 1 for v in values)

    from gblsr.cli.cmsr import main as cmsr_main

    data = tmp_path / "hr"
    data.mkdir()
    write_png(data / "0.png", 30, 36)
    pth = tmp_path / "m.pth"
    write_official_pth(pth, "lmlte_edsr")
    out = tmp_path / "t.yaml"
    args = ["--checkpoint", str(pth), "--data", str(data), "--scale", "6", "--out", str(out)]
    assert cmsr_main(args + ["--device", "cpu", "--mse-threshold", "1e-3"]) == 0
    got = cmsr.load_tables(out)
    assert list(got) == [6]
    assert cmsr_main(args + ["--scale", "8", "--device", "cpu"]) == 0  # updates the file
    assert list(cmsr.load_tables(out)) == [6, 8]


# --------------------------------------------------------------------------- gblsr-eval


@pytest.mark.parametrize(
    "name", ["liif_edsr", "lte_edsr", "lteplus_edsr", "lmliif_edsr", "lmlte_edsr"]
)
def test_gblsr_eval_runs_official_checkpoints(tmp_path, capsys, name):
    from gblsr.cli.eval import main as eval_main

    data = tmp_path / "images"
    data.mkdir()
    write_png(data / "a.png", 24, 28)
    pth = tmp_path / f"{name}.pth"
    write_official_pth(pth, name)
    rc = eval_main(
        [
            "--checkpoint",
            str(pth),
            "--dataset",
            str(data),
            "--scale",
            "2",
            "6",
            "--no-lpips",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["scale"] for r in rows] == [2, 6]
    assert all(math.isfinite(r["psnr"]) for r in rows)
