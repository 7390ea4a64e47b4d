"""Named variants (timm-style): a registered model with preset arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gblsr
from gblsr.errors import UserInputError
from gblsr.registry import register_variant, resolve_variant
from gblsr.training import load_sr_config

REPO = Path(__file__).resolve().parents[1]
TINY_RDN = {"num_features": 8, "growth_rate": 4, "num_rdbs": 1, "num_layers_per_rdb": 1}


def test_variants_are_listed_and_resolve_to_their_model():
    names = gblsr.available("variant")
    assert {"gblsr_asr_rdn", "liif_edsr_baseline", "lte_rdn", "lmlte_rdn"} <= set(names)
    assert resolve_variant("liif_rdn", {}) == ("liif", {"encoder": "rdn"})
    assert resolve_variant("liif", {"hidden": [8]}) == ("liif", {"hidden": [8]})


def test_overrides_merge_over_the_preset_key_by_key():
    arch, cfg = resolve_variant(
        "gblsr_asr_rdn_nole", {"decoder_cfg": {"p_max": 3}, "encoder_cfg": TINY_RDN}
    )
    assert arch == "gblsr_asr"
    assert cfg["decoder_cfg"] == {"local_ensemble": False, "p_max": 3}
    model = gblsr.create_model("gblsr_asr_rdn_nole", **cfg)
    assert not model.decoder.local_ensemble and model.decoder.p_max == 3
    assert model.encoder_name == "rdn"


def test_a_variant_checkpoint_records_the_model_and_its_full_config(tmp_path):
    model = gblsr.create_model("liif_rdn", encoder_cfg=TINY_RDN, hidden=[8])
    path = gblsr.save_model(model, tmp_path / "m.safetensors")
    again = gblsr.load_model(path)
    assert again.registry_name == "liif" and again.get_config() == model.get_config()
    lr = torch.rand(1, 3, 5, 6)
    assert torch.equal(again.predict_full(lr, 9, 11), model.predict_full(lr, 9, 11))


def test_reregistering_a_name_differently_is_refused_and_unknown_names_are_one_line():
    register_variant("liif_rdn", "liif", encoder="rdn")  # the same again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_variant("liif_rdn", "lte", encoder="rdn")
    with pytest.raises(UserInputError, match="unknown model 'liif_nope'"):
        gblsr.create_model("liif_nope")


@pytest.mark.parametrize(
    "config",
    sorted((REPO / "configs" / "peers").glob("*.yaml"))
    + [REPO / "configs" / "asr_rdn_div2k.yaml", REPO / "configs" / "asr_edsr_baseline_div2k.yaml"],
    ids=lambda p: p.stem,
)
def test_shipped_recipes_name_a_variant_that_builds(config):
    cfg = load_sr_config(config)
    assert cfg.model.name in gblsr.available("variant")
    with torch.device("meta"):  # the architecture only, no memory
        model = gblsr.create_model(cfg.model.name, **cfg.model.args)
    assert model.registry_name == resolve_variant(cfg.model.name, {})[0]
