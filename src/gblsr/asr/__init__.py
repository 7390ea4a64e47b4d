"""Arbitrary-scale super-resolution with GB-LSR (RDN encoder + local spectral decoder)."""

from ..geometry import axis_centres, make_coord
from . import convert  # noqa: F401  (registers the reference-checkpoint converter)
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
