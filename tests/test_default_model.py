"""The built-in default model: shipped inside the package, self-describing, used when a command
gets no --checkpoint, and clearing its bar over bicubic (docs/default-model.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import gblsr
from gblsr.asr import GBLSRScalarASR
from gblsr.checkpoint import default_model_path
from gblsr.cli.reconstruct import main as reconstruct_main


def _extra() -> dict:
    with safe_open(str(default_model_path()), "pt") as f:
        return json.loads(f.metadata()["extra"])


def test_default_model_is_shipped_small_and_describes_itself():
    path = default_model_path()
    assert path.is_file()
    assert path.stat().st_size <= 10 * 2**20
    extra = _extra()
    assert extra["training"]["steps"] > 0
    recipes = extra["training"]["recipe"]
    recipes = [recipes] if isinstance(recipes, str) else recipes
    assert recipes[0] == "configs/default_model.yaml"
    repo = default_model_path().parents[3]
    for recipe in recipes:  # the recipes it names are in the repository (when tests run from it)
        assert (repo / recipe).is_file() or not (repo / "configs").is_dir(), recipe
    set5 = extra["scores"]["sets"]["Set5"]
    for s in ("x2", "x3", "x4"):
        assert set5[s]["model"] - set5[s]["bicubic"] == pytest.approx(set5[s]["gain"], abs=2e-3)
    sets = extra["scores"]["sets"]
    for name in ("Set5", "Set14", "B100"):  # issue 13's bar, as recorded when it was packaged
        for s in ("x2", "x3", "x4"):
            assert sets[name][s]["gain"] >= 1.0, (name, s, sets[name][s])


def test_load_model_default_runs():
    model = gblsr.load_model("default")
    assert isinstance(model, GBLSRScalarASR) and not model.training
    lr = torch.rand(1, 3, 9, 7)
    out = model.predict_full(lr, 25, 19)
    assert out.shape == (1, 3, 25, 19) and torch.isfinite(out).all()


def test_reconstruct_without_checkpoint_uses_the_default(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = (rng.random((12, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    code = reconstruct_main(
        ["--input", str(tmp_path / "in.png"), "--scale", "2.5", "--output", str(tmp_path / "o.png")]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "using the built-in default model" in err and len(err.strip().splitlines()) == 1
    assert Image.open(tmp_path / "o.png").size == (25, 30)


def test_default_model_metadata_tells_the_truth(shared_dir):
    from gblsr.evaluation import run_evaluation

    sets = _extra()["scores"]["sets"]
    # The recorded numbers are what the file scores now (Set5 x4, measured afresh).
    data = [str(shared_dir / "data" / "benchmark" / "Set5")]
    ours = run_evaluation("default", data, [4], lpips=False)["rows"][0]["psnr"]
    bicubic = run_evaluation("bicubic", data, [4], lpips=False)["rows"][0]["psnr"]
    assert ours == pytest.approx(sets["Set5"]["x4"]["model"], abs=2e-3)
    assert bicubic == pytest.approx(sets["Set5"]["x4"]["bicubic"], abs=2e-3)


def test_viewer_without_checkpoint_shows_the_default(tmp_path):
    from gblsr.viewer import build_views

    Image.fromarray(np.full((8, 6, 3), 128, np.uint8)).save(tmp_path / "in.png")
    views = build_views(str(tmp_path / "in.png"))
    assert len(views) == 1


def test_training_can_start_from_the_default_model():
    """docs/default-model.md's fine-tuning recipe: model.init: default with the card's args."""
    import re

    import yaml

    from gblsr.training import sr_config_from_dict
    from gblsr.training.sr import _build_model

    card = (default_model_path().parents[3] / "docs" / "default-model.md").read_text()
    block = re.search(r"## Fine-tuning.*?```yaml\n(.*?)```", card, re.S)
    if block is None:
        pytest.skip("docs/ not beside the package")
    cfg = yaml.safe_load(block.group(1))
    model = _build_model(sr_config_from_dict(cfg))
    shipped = gblsr.load_model("default")
    for (name, a), b in zip(model.state_dict().items(), shipped.state_dict().values()):
        assert torch.equal(a, b), name
