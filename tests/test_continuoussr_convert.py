"""Official-format ContinuousSR checkpoints through gblsr.load_model and gblsr-convert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gblsr.checkpoint import load_model
from gblsr.errors import CheckpointError
from gblsr.peers import continuoussr_convert as cc
from gblsr.peers.continuoussr import ContinuousSR

TINY = {"base": "edsr", "base_cfg": {"num_blocks": 1, "num_features": 8}, "num_feat": 64}


def _official_file(path, encoder_name, sd):
    spec = {
        "name": "continuous-gaussian",
        "args": {
            "encoder_spec": {"name": encoder_name, "args": {}},
            "cnn_spec": {"name": "unused"},
            "fc_spec": {"name": "unused"},
        },
        "sd": sd,
    }
    torch.save({"model": spec, "epoch": 1}, path)


@pytest.fixture
def stand_in_encoder(monkeypatch):
    """Map the official encoder name 'stand-in' to our small upsampled4 encoder, so the
    checkpoint plumbing is tested without HAT (HAT/SwinIR are tested where they exist)."""
    real = cc._encoder

    def fake(name, args, enc_sd):
        if name == "stand-in":
            return "upsampled4", dict(TINY), enc_sd
        return real(name, args, enc_sd)

    monkeypatch.setattr(cc, "_encoder", fake)


def test_official_file_loads_with_licence(tmp_path, stand_in_encoder, capsys):
    torch.manual_seed(0)
    ours = ContinuousSR(encoder="upsampled4", encoder_cfg=TINY).eval()
    _official_file(tmp_path / "ContinuousSR.pth", "stand-in", ours.state_dict())
    model = load_model(tmp_path / "ContinuousSR.pth")
    assert model.registry_name == "continuoussr"
    cfg = model.get_config()
    assert cfg["weights_licence"] == "CC BY-NC 4.0"
    assert cfg["offset_input"] == "lrelu" and cfg["tile_cap"] is None
    lr = torch.rand(1, 3, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(lr).render(20, 16), ours.encode(lr).render(20, 16))

    from gblsr.cli.convert import main

    dst = tmp_path / "csr.safetensors"
    assert main([str(tmp_path / "ContinuousSR.pth"), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "CC BY-NC 4.0" in out and "BSD-3" in out
    from safetensors import safe_open

    with safe_open(str(dst), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["extra"])["weights_licence"] == "CC BY-NC 4.0"
    assert json.loads(meta["config"])["weights_licence"] == "CC BY-NC 4.0"
    assert load_model(dst).get_config() == cfg


def test_unsupported_encoder_and_stray_keys(tmp_path, stand_in_encoder):
    sd = ContinuousSR(encoder="upsampled4", encoder_cfg=TINY).state_dict()
    _official_file(tmp_path / "a.pth", "edsr-baseline", sd)
    with pytest.raises(CheckpointError, match="64-channel x4"):
        load_model(tmp_path / "a.pth")
    _official_file(tmp_path / "b.pth", "stand-in", {**sd, "extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_model(tmp_path / "b.pth")


@pytest.mark.parametrize("encoder", ["hat", "swinir"])
def test_official_hat_and_swinir_files(tmp_path, encoder):
    """A ContinuousSR file in the official format whose encoder (official HAT / SwinIR state
    from tests/fixtures/encoders) and heads (the official seeded heads) are both official:
    the encoder reproduces the official x4 feature map and the field is the heads' on it."""
    from safetensors import safe_open
    from test_continuoussr import _official_heads_state

    from gblsr.peers.continuoussr import field_means

    fx = (
        Path(__file__).resolve().parent
        / "fixtures"
        / "encoders"
        / f"{encoder}_csr_small.safetensors"
    )
    with safe_open(str(fx), "pt") as f:
        enc_sd = {k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("state.")}
        lr, feat = f.get_tensor("input.b1_6x5"), f.get_tensor("output.b1_6x5")
        args = json.loads(f.metadata()["case"])["args"]
    sd = {f"encoder.{k}": v for k, v in enc_sd.items()}
    sd.update(_official_heads_state())
    spec = {
        "name": "continuous-gaussian",
        "args": {
            "encoder_spec": {"name": encoder, "args": args},
            "cnn_spec": None,
            "fc_spec": None,
        },
        "sd": sd,
    }
    torch.save({"model": spec}, tmp_path / "official.pth")
    model = load_model(tmp_path / "official.pth")
    assert model.get_config()["encoder"] == encoder
    with torch.no_grad():
        state = model.encode_state(lr)
        colour, chol, offset = model.heads(torch.nn.functional.pixel_unshuffle(feat, 2))
    tol = {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(state["colour"], colour, **tol)
    torch.testing.assert_close(state["chol"], chol, **tol)
    torch.testing.assert_close(state["means"], field_means(offset, 6, 5), **tol)
