"""Tiled encoding lives in :mod:`gblsr.encoder_tiles` (a foundation module, so that
``SRModel.predict_full`` can use it); this name is kept for existing imports."""

from ..encoder_tiles import (  # noqa: F401
    TiledEncoder,
    __all__,  # noqa: F401
    encode_tiled,
    encoder_bytes_per_pixel,
    encoder_tile_for_budget,
    tile_spans,
    tiled_encoding,
)
