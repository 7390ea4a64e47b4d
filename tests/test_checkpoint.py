"""Our safetensors format, reference-format files, and one-line errors for bad files."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers import TINY_RDN
from safetensors import safe_open
from safetensors.torch import save_file

import gblsr
from gblsr.errors import CheckpointError
from gblsr.training import expand_run_configs


def test_save_writes_architecture_config_and_version(tmp_path, asr_model):
    path = gblsr.save_model(asr_model, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "gblsr.model"
    assert meta["architecture"] == "gblsr_asr"
    assert meta["gblsr_version"] == gblsr.__version__
    cfg = json.loads(meta["config"])
    assert cfg["encoder_cfg"]["num_features"] == 8
    assert cfg["decoder_cfg"] == {"p_max": 16, "bandwidth_init": 1.0, "local_ensemble": True}


@pytest.mark.parametrize("which", ["asr", "native"])
def test_round_trip_rebuilds_the_same_model(tmp_path, which, asr_model, native_model):
    model = asr_model if which == "asr" else native_model
    path = gblsr.save_model(model, tmp_path / "m.safetensors")
    loaded = gblsr.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        if which == "asr":
            assert torch.equal(loaded.predict_full(x, 20, 30), model.predict_full(x, 20, 30))
        else:
            assert torch.equal(loaded(x)["recon"], model(x)["recon"])


def test_native_settings_without_weights_travel_with_the_file(tmp_path):
    # family, ranges and bandwidth_mode change outputs but not the state dict: they must be
    # restored from the file, not defaulted.
    from _helpers import tiny_native_config

    cfg = tiny_native_config(family="cosine", s_e_range=(0.5, 3.0), cutoff_sharpness=2.0)
    model = gblsr.LocalSpectralArm(cfg, adapt_order=False, bandwidth_mode="local_logspace")
    loaded = gblsr.load_model(gblsr.save_model(model, tmp_path / "n.safetensors"))
    assert loaded.cfg.basis.family == "cosine"
    assert loaded.cfg.basis.s_e_range == (0.5, 3.0)
    assert loaded.cfg.basis.cutoff_sharpness == 2.0
    assert loaded.decoder.bandwidth_mode == "local_logspace"
    assert loaded.decoder.adapt_order is False


def test_reference_asr_state_dict_loads_with_inferred_architecture(tmp_path, asr_model):
    torch.save(asr_model.state_dict(), tmp_path / "ref.pt")
    save_file(asr_model.state_dict(), str(tmp_path / "ref.safetensors"))
    for name in ("ref.pt", "ref.safetensors"):
        loaded = gblsr.load_model(tmp_path / name)
        assert loaded.encoder.cfg.num_features == TINY_RDN["num_features"]
        assert loaded.encoder.cfg.num_rdbs == TINY_RDN["num_rdbs"]
        assert loaded.decoder.p_max == 16
    off = gblsr.load_model(tmp_path / "ref.pt", local_ensemble=False)
    assert off.decoder.local_ensemble is False


RUN_YAML = """
experiment_id: t
run_root: runs/t
base:
  image_size: 32
  patch_size: 8
  d_feat: 16
  p_max: 6
  family: cosine
arms:
  - arm: local_spectral
    slug: scalar
    bandwidth_mode: global_scalar
  - arm: local_spectral
    bandwidth_mode: local_logspace
seeds: [0, 1]
"""


def _yaml_model(tmp_path, index):
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(RUN_YAML.replace("d_feat: 16", "d_feat: 16\n  groupnorm: 4"))
    import yaml

    rc = expand_run_configs(yaml.safe_load(cfg_path.read_text()))[index]
    from gblsr.training import build_model_from_run_config

    return cfg_path, rc, build_model_from_run_config(rc)


def test_reference_native_state_dict_with_run_config_yaml(tmp_path):
    cfg_path, rc, model = _yaml_model(tmp_path, 2)  # arms x seeds: the second arm, seed 0
    assert model.decoder.bandwidth_mode == "local_logspace"
    torch.save({"state_dict": model.state_dict()}, tmp_path / "model.pt")
    loaded = gblsr.load_model(tmp_path / "model.pt", config=cfg_path, arm_index=2)
    assert loaded.get_config() == model.get_config()
    with pytest.raises(CheckpointError, match="do not fit"):
        gblsr.load_model(tmp_path / "model.pt", config=cfg_path, arm_index=0)


def test_reference_trainer_payload_carries_its_config(tmp_path):
    _, rc, model = _yaml_model(tmp_path, 0)
    payload = {"state_dict": model.state_dict(), "arm": rc.arm, "seed": 0, "config": rc.to_dict()}
    torch.save(payload, tmp_path / "model.pt")
    loaded = gblsr.load_model(tmp_path / "model.pt")
    assert loaded.cfg.basis.family == "cosine"
    assert loaded.decoder.bandwidth_mode == "global_scalar"


def test_native_state_dict_without_config_asks_for_it(tmp_path, native_model):
    torch.save(native_model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="--config"):
        gblsr.load_model(tmp_path / "bare.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a checkpoint"),
        (b"hello, this is text", "not a checkpoint"),
        (b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": broken}', "damaged safetensors"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        gblsr.load_model(p)
    assert "\n" not in str(err.value)


def test_truncated_checkpoint_is_reported(tmp_path, asr_model):
    path = gblsr.save_model(asr_model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        gblsr.load_model(path)


def test_pickled_objects_are_never_executed(tmp_path, capsys):
    torch.save({"state_dict": {}, "x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="never unpickles"):
        gblsr.load_model(tmp_path / "evil.pt")
    assert "pickle code ran" not in capsys.readouterr().out


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        gblsr.load_model(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="directory"):
        gblsr.load_model(tmp_path)


def test_unknown_architecture_in_metadata(tmp_path, asr_model):
    save_file(
        {"w": torch.zeros(1)},
        str(tmp_path / "x.safetensors"),
        metadata={"format": "gblsr.model", "architecture": "nope", "config": "{}"},
    )
    with pytest.raises(gblsr.errors.UserInputError, match="unknown model 'nope'"):
        gblsr.load_model(tmp_path / "x.safetensors")


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, asr_model, monkeypatch):
    path = gblsr.save_model(asr_model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    import safetensors.torch as st

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(OSError):
        gblsr.save_model(asr_model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
