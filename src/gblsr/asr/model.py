"""GB-LSR-ASR: an image encoder (RDN by default) + the GB-LSR arbitrary-scale decoder.

Variants are configuration only::

    GBLSRScalarASR()                                        # base, 22,023,873 parameters
    GBLSRScalarASR(decoder_cfg={"local_ensemble": False})   # noLE
    GBLSRScalarASR(encoder_cfg={"num_features": 96})        # nf96, 24,927,393 parameters

Images go in and come out in [0, 1] (no normalisation inside, output unclamped).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..registry import make, register, register_variant
from ..representation import SRModel
from .decoder import ASRRepresentation, GBLSRScalarASRDecoder

__all__ = ["GBLSRScalarASR", "DEFAULT_TILE_QUERIES", "ASRRepresentation"]

# Kept for compatibility: predict_full's tiles are bounded by memory (ASRRepresentation.tile_shape)
# unless ``tile`` (output pixels per tile) is given.
DEFAULT_TILE_QUERIES = 1 << 20


@register("model", "gblsr_asr")
class GBLSRScalarASR(SRModel, nn.Module):
    """Encoder + :class:`GBLSRScalarASRDecoder`. ``encode``, ``predict_full(lr, H, W, *,
    max_memory=None, tile=None)`` come from :class:`~gblsr.representation.SRModel`.

    encoder_cfg: keyword config of the encoder (``RDNConfig`` fields for ``rdn``).
    decoder_cfg: ``p_max``, ``bandwidth_init``, ``local_ensemble``.
    encoder:     registered encoder name.
    """

    def __init__(
        self,
        encoder_cfg: dict | None = None,
        decoder_cfg: dict | None = None,
        encoder: str = "rdn",
    ):
        super().__init__()
        self.encoder_name = encoder
        self.encoder = make("encoder", encoder, **(encoder_cfg or {}))
        self.decoder = GBLSRScalarASRDecoder(in_dim=self.encoder.out_dim, **(decoder_cfg or {}))

    def get_config(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder_name,
            "encoder_cfg": self.encoder.get_config(),
            "decoder_cfg": self.decoder.get_config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GBLSRScalarASR:
        return cls(**config)

    def forward(
        self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Training interface: lr (B, 3, h, w), coord (B, Q, 2) (y, x) -> RGB (B, Q, 3)."""
        return self.decoder(self.encoder(lr), coord, cell)

    def encode_state(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The compact tensors an encoded image is stored as (feature blobs): the encoder
        output ``features`` (B, D, h, w), 12x smaller than the coefficients at p_max = 16."""
        return {"features": self.encoder(lr)}

    def representation(
        self, state: dict[str, torch.Tensor], input_size: tuple[int, int] | None = None
    ) -> ASRRepresentation:
        """Rebuild the renderable representation from :meth:`encode_state`'s tensors."""
        return self.decoder.encode(state["features"], input_size=input_size)


# Named variants: create_model("gblsr_asr_rdn"), or model: {name: gblsr_asr_rdn} in a recipe.
register_variant("gblsr_asr_rdn", "gblsr_asr", encoder="rdn")
register_variant("gblsr_asr_edsr_baseline", "gblsr_asr", encoder="edsr")
register_variant("gblsr_asr_swinir", "gblsr_asr", encoder="swinir")
register_variant(
    "gblsr_asr_rdn_nole", "gblsr_asr", encoder="rdn", decoder_cfg={"local_ensemble": False}
)
