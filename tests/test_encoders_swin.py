"""SwinIR and HAT encoders against golden outputs of the official code
(tests/fixtures/generate_encoder_fixtures.py), plus their official-state-dict handling."""

from __future__ import annotations

import pytest
import torch
from _encoder_fixtures import FIXTURES, load_case

from gblsr.encoders.hat import HATConfig, HATEncoder, hat_config_from_official, hat_from_official
from gblsr.encoders.swinir import (
    SwinIRConfig,
    SwinIREncoder,
    swinir_config_from_official,
    swinir_from_official,
)
from gblsr.errors import CheckpointError
from gblsr.registry import make

CASES = sorted(p.stem for p in FIXTURES.glob("*.safetensors"))
REL_TOL = 1e-5


def build_ours(case: dict, sd: dict) -> torch.nn.Module:
    if case["class"] == "HAT":
        return hat_from_official(sd, case["args"])
    return swinir_from_official(sd)


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).abs().max() / ref.abs().max())


@pytest.fixture(autouse=True)
def one_thread():
    # Small tensors on a shared machine: a second thread only adds synchronisation.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_fixtures_present():
    assert {"swinir_lte_small", "swinir_csr_small", "hat_csr_small"} <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_matches_official(name):
    torch.manual_seed(0)
    case, sd, tensors, meta = load_case(name)
    assert meta["official_commit"] in (
        "a8815d6ac8a643cd0463a092fa0f58e03935b343",
        "3879d16086b96d4e776cf03ced7550c1aec4723a",
    )
    model = build_ours(case, sd).eval()
    if case.get("ours"):  # the config read from the weights is the one the case was built with
        for k, v in case["ours"].items():
            assert model.get_config()[k] == v, k
    assert sum(p.numel() for p in model.parameters()) == sum(
        v.numel()
        for k, v in sd.items()
        if not k.endswith(("relative_position_index", "_SA"))
        and not k.endswith(("attn_mask", "_OCA"))
    )
    for call in case["calls"]:
        x = tensors[call["input"]]
        with torch.no_grad():
            y = model(x)
        assert list(y.shape) == call["out_shape"], call["name"]
        if "output" in call:
            ref = tensors[call["output"]]
        else:
            s = call["proj_stride"]
            ref = tensors[call["output_proj"]]
            y = torch.einsum("pc,bchw->bphw", tensors["projection"], y[..., ::s, ::s])
        err = rel_err(y, ref)
        assert err < REL_TOL, f"{name}/{call['name']}: relative error {err:.2e}"


def test_registered_and_config_roundtrip():
    enc = make("encoder", "swinir", embed_dim=12, depths=[1], num_heads=[2], window_size=4)
    assert isinstance(enc, SwinIREncoder) and enc.out_dim == 64
    again = make("encoder", "swinir", **enc.get_config())
    assert again.get_config() == enc.get_config()
    hat = make(
        "encoder", "hat", embed_dim=12, depths=[1], num_heads=[2], window_size=4, squeeze_factor=4
    )
    assert isinstance(hat, HATEncoder) and hat.scale == 4
    assert HATEncoder.from_config(hat.get_config()).get_config() == hat.get_config()


def test_default_parameter_counts():
    # LTE's SwinIR encoder (spec liif_lte.md 1.3): 11,603,044 parameters.
    with torch.device("meta"):
        enc = SwinIREncoder()
    assert sum(p.numel() for p in enc.parameters()) == 11_603_044
    assert not any("relative_position_index" in k or "attn_mask" in k for k in enc.state_dict())


def test_any_input_size_batch_consistent():
    torch.manual_seed(1)
    enc = SwinIREncoder(SwinIRConfig(embed_dim=8, depths=[2], num_heads=[2], window_size=4)).eval()
    x = torch.rand(2, 3, 7, 10)
    with torch.no_grad():
        y = enc(x)
        y0 = enc(x[:1])
    assert y.shape == (2, 64, 8, 12)  # padded to the window multiple, not cropped (as LTE)
    torch.testing.assert_close(y[:1], y0, rtol=1e-5, atol=1e-6)
    up = SwinIREncoder(
        SwinIRConfig(
            embed_dim=8, depths=[2], num_heads=[2], window_size=4, upsampler="pixelshuffle"
        )
    ).eval()
    with torch.no_grad():
        assert up(x).shape == (2, 64, 28, 40)


def test_attention_chunking_invariant(monkeypatch):
    from gblsr.encoders import _window

    torch.manual_seed(2)
    enc = HATEncoder(
        HATConfig(embed_dim=8, depths=[2], num_heads=[2], window_size=4, squeeze_factor=4)
    ).eval()
    x = torch.rand(1, 3, 16, 12)
    with torch.no_grad():
        ref = enc(x)
        monkeypatch.setattr(_window, "ATTENTION_CHUNK_BYTES", 1)  # one window per chunk
        got = enc(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_hat_config_inferred_from_shapes_alone():
    case, sd, _, _ = load_case("hat_csr_small")
    cfg = hat_config_from_official(sd, None)
    for k in ("embed_dim", "depths", "num_heads", "window_size", "overlap_ratio", "upscale"):
        assert cfg[k] == case["args"][k], k
    assert cfg["mlp_ratio"] == case["args"]["mlp_ratio"]
    # compress/squeeze ratios: the largest value that builds the same layer sizes
    assert (cfg["compress_ratio"], cfg["squeeze_factor"]) == (3, 6)
    dim = cfg["embed_dim"]
    assert dim // cfg["compress_ratio"] == dim // case["args"]["compress_ratio"]
    assert dim // cfg["squeeze_factor"] == dim // case["args"]["squeeze_factor"]


def test_hat_wrong_args_and_buffers_rejected():
    case, sd, _, _ = load_case("hat_csr_small")
    with pytest.raises(CheckpointError, match="depths"):
        hat_from_official(sd, {**case["args"], "depths": [2, 2, 2], "num_heads": [2, 3, 3]})
    bad = dict(sd)
    bad["relative_position_index_SA"] = sd["relative_position_index_SA"].flip(0)
    with pytest.raises(CheckpointError, match="relative_position_index_SA"):
        hat_from_official(bad, case["args"])
    missing = {k: v for k, v in sd.items() if k != "conv_after_body.weight"}
    with pytest.raises(CheckpointError):
        hat_from_official(missing, case["args"])


def test_hat_encoder_block_with_prefix():
    # A ContinuousSR-format state dict: the encoder's keys under "encoder.", head keys beside.
    case, sd, _, _ = load_case("hat_csr_w8")
    full = {f"encoder.{k}": v for k, v in sd.items()}
    full["conv1.weight"] = torch.zeros(512, 256, 3, 3)
    enc = hat_from_official(full, case["args"], prefix="encoder.")
    assert enc.get_config()["conv_scale"] == case["args"]["conv_scale"]
    assert enc.get_config()["window_size"] == 8


def test_swinir_bad_index_rejected():
    _, sd, _, _ = load_case("swinir_lte_small")
    key = next(k for k in sd if k.endswith("attn.relative_position_index"))
    bad = dict(sd, **{key: sd[key].t().contiguous() + 1})
    with pytest.raises(CheckpointError, match="relative_position_index"):
        swinir_from_official(bad)
    cfg = swinir_config_from_official(sd)
    assert cfg["window_size"] == 4 and cfg["depths"] == [2, 2]


def test_follows_input_dtype():
    torch.manual_seed(4)
    hat = HATEncoder(
        HATConfig(embed_dim=8, depths=[2], num_heads=[2], window_size=4, squeeze_factor=4)
    ).eval()
    x = torch.rand(1, 3, 9, 6)
    with torch.no_grad():
        y32 = hat(x)
        y64 = hat.double()(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-5)


def test_encoder_from_official_dispatch():
    from gblsr.encoders import encoder_from_official

    case, sd, tensors, _ = load_case("swinir_csr_small")
    full = {f"encoder.{k}": v for k, v in sd.items()}
    enc = encoder_from_official("swinir", full, {"no_upsampling": True}).eval()
    call = next(c for c in case["calls"] if "output" in c)
    with torch.no_grad():
        y = enc(tensors[call["input"]])
    assert rel_err(y, tensors[call["output"]]) < REL_TOL
    with pytest.raises(CheckpointError, match="rdn"):
        encoder_from_official("rdn", full)
