"""The SwinIR recipes (configs/peers/swinir_*.yaml): they parse, build the LTE paper's models, and
a tiny override of one trains for two steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import gblsr
from gblsr.cli.train import main as train_main
from gblsr.training import load_sr_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    "swinir_liif": ("liif", 11_949_927),
    "swinir_lte": ("lte", 12_096_871),
    "swinir_gblsr": ("gblsr_asr", None),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_parses_and_builds(name):
    cfg = load_sr_config(REPO / "configs" / "peers" / f"{name}.yaml")
    arch, count = RECIPES[name]
    assert cfg.model.name == arch and cfg.model.args["encoder"] == "swinir"
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.data.sample_q, cfg.data.inp_size) == (
        32,
        1000,
        2304,
        48,
    )
    assert cfg.optim.lr == 2e-4 and cfg.schedule.milestones == [500, 800, 900, 950]
    with torch.device("meta"):
        model = gblsr.create_model(cfg.model.name, **cfg.model.args)
    assert sum(p.numel() for p in model.encoder.parameters()) == 11_603_044
    if count is not None:
        assert sum(p.numel() for p in model.parameters()) == count


def test_two_training_steps_of_a_tiny_swinir_lte(tmp_path, capsys):
    cfg = yaml.safe_load((REPO / "configs" / "peers" / "swinir_lte.yaml").read_text())
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["device"] = "cpu"
    cfg["model"]["args"]["encoder_cfg"] = {
        "embed_dim": 8,
        "depths": [2],
        "num_heads": [2],
        "window_size": 4,
        "num_feat": 8,
    }
    cfg["model"]["args"].update(hidden_dim=8, hidden=[8])
    cfg["data"].update(
        image_dirs=["builtin:samples"], repeat=1, inp_size=12, sample_q=32, num_workers=0
    )
    cfg["data"]["cache"] = "none"
    cfg["val"] = {"datasets": [], "scales": [2]}
    cfg["train"].update(batch_size=2, epochs=1, max_steps=2)
    cfg["checkpoint"] = {"every_steps": 2, "keep_last": 1}
    cfg["log"] = {"every_steps": 1, "progress": False, "tensorboard": False}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(["--config", str(tmp_path / "c.yaml")]) == 0
    finally:
        torch.set_num_threads(n)
    final = Path(capsys.readouterr().out.strip().splitlines()[-1])
    model = gblsr.load_model(final)
    assert model.encoder.get_config()["embed_dim"] == 8
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert len(log) == 3  # header + 2 steps
