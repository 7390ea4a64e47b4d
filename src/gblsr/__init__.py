"""gblsr: GB-LSR (Global-Bandwidth Local Spectral Representation) and its peers for continuous
image representation and arbitrary-scale super-resolution.

    import gblsr
    model = gblsr.load_model("asr.safetensors")          # rebuilds the architecture from the file
    sr = model.predict_full(lr, 3 * h, 3 * w)             # [0, 1] in, [0, 1] out

Subpackages: models (native GB-LSR), encoders, asr (arbitrary-scale GB-LSR), latency,
training, data, metrics, cli.
"""

# The method packages register their models, encoders and checkpoint converters on import
# (gblsr.registry imports none of them). A new method package adds one line here.
from . import asr, encoders, models, peers  # noqa: F401  (registration)
from ._version import __version__
from .asr import GBLSRScalarASR
from .checkpoint import load_model, save_model
from .latency import LatencyConfig, measure_latency
from .models import (
    BaselineArm,
    BasisConfig,
    EncoderConfig,
    LocalSpectralArm,
    ModelConfig,
    build_model,
)
from .registry import available, create_model

__all__ = [
    "__version__",
    "LocalSpectralArm",
    "BaselineArm",
    "build_model",
    "ModelConfig",
    "EncoderConfig",
    "BasisConfig",
    "GBLSRScalarASR",
    "measure_latency",
    "LatencyConfig",
    "save_model",
    "load_model",
    "create_model",
    "available",
]
