"""Official-format SwinIR-LTE checkpoints (LTE's train.py save format) through gblsr.load_model,
the converter and gblsr-eval. The encoder weights are the official code's own state dict (the
golden fixture's, buffers included); the LTE decoder keys are the official ones (spec 6.2)."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from _encoder_fixtures import load_case
from PIL import Image

import gblsr
from gblsr.encoders.swinir import SwinIREncoder
from gblsr.peers.lte import LTE

HIDDEN = 16


def official_swinir_lte_file(path, gen: torch.Generator) -> tuple[dict, dict]:
    """Write {'model': {'name': 'lte', 'args', 'sd'}, 'optimizer', 'epoch'} as LTE's train.py
    does, with the small official SwinIR of the fixture as encoder."""
    case, enc_sd, tensors, _ = load_case("swinir_lte_small")
    sd = OrderedDict((f"encoder.{k}", v) for k, v in enc_sd.items())

    def rnd(*shape):
        return torch.randn(shape, generator=gen) / np.sqrt(np.prod(shape[1:]))

    sd["coef.weight"], sd["coef.bias"] = rnd(HIDDEN, 64, 3, 3), rnd(HIDDEN)
    sd["freq.weight"], sd["freq.bias"] = rnd(HIDDEN, 64, 3, 3), rnd(HIDDEN)
    sd["phase.weight"] = rnd(HIDDEN // 2, 2)
    for i, (o, n) in enumerate([(HIDDEN, HIDDEN), (HIDDEN, HIDDEN), (3, HIDDEN)]):
        sd[f"imnet.layers.{2 * i}.weight"], sd[f"imnet.layers.{2 * i}.bias"] = rnd(o, n), rnd(o)
    spec = {
        "name": "lte",
        "args": {
            "encoder_spec": {"name": "swinir", "args": {"no_upsampling": True}},
            "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [HIDDEN] * 2}},
            "hidden_dim": HIDDEN,
        },
        "sd": sd,
    }
    torch.save(
        {"model": spec, "optimizer": {"name": "adam", "args": {"lr": 2e-4}, "sd": {}}, "epoch": 1},
        path,
    )
    return case, tensors


def test_official_swinir_lte_file_loads_strictly_and_runs(tmp_path):
    path = tmp_path / "swinir-lte.pth"
    case, tensors = official_swinir_lte_file(path, torch.Generator().manual_seed(0))
    official_sd = torch.load(path, weights_only=True)["model"]["sd"]
    buffers = [k for k in official_sd if k.endswith(("relative_position_index", "attn_mask"))]
    assert len(buffers) == 2 * 2 + 2  # an index per block, a mask per shifted block

    model = gblsr.load_model(path)
    assert isinstance(model, LTE) and isinstance(model.encoder, SwinIREncoder)
    assert model.encoder.get_config()["window_size"] == 4
    assert len(model.state_dict()) == len(official_sd) - len(buffers)
    call = next(c for c in case["calls"] if "output" in c)
    with torch.no_grad():
        feat = model.encoder(tensors[call["input"]])
    ref = tensors[call["output"]]
    assert (feat - ref).abs().max() <= 1e-5 * ref.abs().max()

    lr = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    out = model.predict_full(lr, 20, 25)
    assert out.shape == (1, 3, 20, 25) and torch.isfinite(out).all()

    # gblsr-convert writes it as a self-describing safetensors file that rebuilds the same model
    from gblsr.cli.convert import main as convert

    dst = tmp_path / "converted.safetensors"
    assert convert([str(path), str(dst)]) == 0
    again = gblsr.load_model(dst)
    assert again.encoder.get_config() == model.encoder.get_config()
    assert torch.equal(again.predict_full(lr, 20, 25), out)


def test_full_size_parameter_counts():
    # Spec liif_lte.md 1.4: SwinIR-LTE 12,096,871 parameters, encoder 11,603,044; the official
    # state dict has 557 entries, 54 of them the buffers we recompute (36 indices, 18 masks).
    with torch.device("meta"):
        model = LTE(encoder="swinir")
    assert sum(p.numel() for p in model.parameters()) == 12_096_871
    assert sum(p.numel() for p in model.encoder.parameters()) == 11_603_044
    assert len(model.state_dict()) == 557 - 36 - 18


def test_gblsr_eval_runs_on_official_file(tmp_path, capsys):
    from gblsr.cli.eval import main

    path = tmp_path / "swinir-lte.pth"
    official_swinir_lte_file(path, torch.Generator().manual_seed(0))
    data = tmp_path / "d"
    data.mkdir()
    rng = np.random.default_rng(0)
    img = (rng.random((24, 20, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(data / "a.png")
    torch.set_num_threads(1)
    code = main(["--checkpoint", str(path), "--dataset", str(data), "--scale", "2", "--no-lpips"])
    out = capsys.readouterr().out
    assert code == 0
    row = json.loads(out)["rows"][0]
    assert row["n_images"] == 1 and row["psnr"] is not None and np.isfinite(row["psnr"])


def test_mismatched_swinir_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "bad.pth"
    official_swinir_lte_file(path, torch.Generator().manual_seed(0))
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model"]["sd"]["encoder.norm.weight"]
    torch.save(ckpt, path)
    with pytest.raises(gblsr.errors.CheckpointError):
        gblsr.load_model(path)
