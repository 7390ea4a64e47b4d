"""Tiled encoding lives in :mod:`gblsr.encoder_tiles` (a foundation module, so that
``SRModel.predict_full`` can use it); this name is kept for existing imports."""

from ..encoder_tiles import *  # noqa: F403
from ..encoder_tiles import __all__  # noqa: F401
