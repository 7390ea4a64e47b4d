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
