"""Image encoders, registered under kind ``"encoder"`` (see :mod:`gblsr.registry`)."""

from .rdn import RDNConfig, RDNEncoder, ResidualDenseBlock, build_rdn_encoder

__all__ = ["RDNConfig", "RDNEncoder", "ResidualDenseBlock", "build_rdn_encoder"]
