"""Image encoders, registered under kind ``"encoder"`` (see :mod:`gblsr.registry`)."""

from .edsr import EDSRConfig, EDSREncoder
from .hat import HATConfig, HATEncoder, hat_from_official
from .official import encoder_from_official
from .rdn import RDNConfig, RDNEncoder, ResidualDenseBlock, build_rdn_encoder
from .swinir import SwinIRConfig, SwinIREncoder, swinir_from_official
from .upsampled import UpsampledEncoder  # noqa: F401

__all__ = [
    "EDSRConfig",
    "EDSREncoder",
    "HATConfig",
    "HATEncoder",
    "RDNConfig",
    "RDNEncoder",
    "ResidualDenseBlock",
    "SwinIRConfig",
    "SwinIREncoder",
    "build_rdn_encoder",
    "encoder_from_official",
    "hat_from_official",
    "swinir_from_official",
]
