"""Image encoders, registered under kind ``"encoder"`` (see :mod:`gblsr.registry`)."""

from .edsr import EDSRConfig, EDSREncoder
from .rdn import RDNConfig, RDNEncoder, ResidualDenseBlock, build_rdn_encoder
from .upsampled import UpsampledEncoder  # noqa: F401

__all__ = [
    "EDSRConfig",
    "EDSREncoder",
    "RDNConfig",
    "RDNEncoder",
    "ResidualDenseBlock",
    "build_rdn_encoder",
]
