"""Arbitrary-scale super-resolution with GB-LSR (RDN encoder + local spectral decoder)."""

from .coord import axis_centres, make_coord
from .decoder import GBLSRScalarASRDecoder
from .model import GBLSRScalarASR
from .render import ASRRepresentation

__all__ = [
    "GBLSRScalarASR",
    "GBLSRScalarASRDecoder",
    "ASRRepresentation",
    "make_coord",
    "axis_centres",
]
