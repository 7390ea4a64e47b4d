"""The public API: README imports, __all__ everywhere, the registry, the version."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import gblsr

SUBPACKAGES = ["models", "encoders", "asr", "latency", "training", "data", "metrics", "cli"]


def test_readme_top_level_imports():
    from gblsr import (  # noqa: F401
        BasisConfig,
        EncoderConfig,
        GBLSRScalarASR,
        LatencyConfig,
        LocalSpectralArm,
        ModelConfig,
        build_model,
        load_model,
        measure_latency,
        save_model,
    )


@pytest.mark.parametrize("name", ["gblsr"] + [f"gblsr.{s}" for s in SUBPACKAGES])
def test_every_init_declares_all_and_its_names_resolve(name):
    mod = importlib.import_module(name)
    assert hasattr(mod, "__all__"), name
    for symbol in mod.__all__:
        assert hasattr(mod, symbol), f"{name}.{symbol}"
        assert not symbol.startswith("_") or symbol == "__version__"


def test_reference_subpackage_exports():
    from gblsr.encoders import RDNConfig, RDNEncoder, build_rdn_encoder  # noqa: F401
    from gblsr.latency import LatencyConfig, LatencyResult, measure_latency  # noqa: F401
    from gblsr.models import (  # noqa: F401
        BaselineArm,
        GlobalFourierMLPDecoder,
        LocalSpectralDecoder,
        n_params,
    )
    from gblsr.training import RunConfig, build_model_from_run_config  # noqa: F401


def test_every_module_imports():
    for info in pkgutil.walk_packages(gblsr.__path__, prefix="gblsr."):
        importlib.import_module(info.name)


def test_registry_builds_models_by_name():
    assert {"local_spectral", "global_fourier_mlp", "gblsr_asr"} <= set(gblsr.available())
    m = gblsr.create_model(
        "gblsr_asr",
        encoder_cfg={"num_features": 8, "growth_rate": 8, "num_rdbs": 1, "num_layers_per_rdb": 1},
    )
    assert isinstance(m, gblsr.GBLSRScalarASR)
    with pytest.raises(gblsr.errors.UserInputError, match="unknown model"):
        gblsr.create_model("no_such_model")


def test_version_is_a_string():
    assert isinstance(gblsr.__version__, str) and gblsr.__version__.count(".") == 2


def test_every_module_all_resolves():
    """Modules that moved keep their old names importable (re-exports); nothing dangles."""
    for info in pkgutil.walk_packages(gblsr.__path__, prefix="gblsr."):
        if info.name == "gblsr.__main__":
            continue
        mod = importlib.import_module(info.name)
        for symbol in getattr(mod, "__all__", []):
            assert hasattr(mod, symbol), f"{info.name}.{symbol}"


def test_moved_names_still_import_from_their_old_places():
    from gblsr.asr.coord import axis_centres, make_coord  # noqa: F401
    from gblsr.asr.decoder import CORNER_EPS, contract_cells, owning_cells  # noqa: F401
    from gblsr.asr.render import ASRRepresentation, plan_axis, render_window  # noqa: F401
    from gblsr.checkpoint import register_converter  # noqa: F401
    from gblsr.data.image_io import atomic_write  # noqa: F401
    from gblsr.peers._common import blend, ensemble_members  # noqa: F401
    from gblsr.training.config import RunConfig, load_config  # noqa: F401
    from gblsr.training.state import write_json_atomic  # noqa: F401

    assert ASRRepresentation is gblsr.asr.ASRRepresentation
    assert make_coord is gblsr.geometry.make_coord
