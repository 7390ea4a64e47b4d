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

from ..registry import lookup, register
from .coord import make_coord
from .decoder import GBLSRScalarASRDecoder

__all__ = ["GBLSRScalarASR", "DEFAULT_TILE_QUERIES"]

# Queries rendered per chunk in predict_full: bounds the per-corner gather to
# DEFAULT_TILE_QUERIES x 3 p_max^2 floats (192 MiB at p_max = 16).
DEFAULT_TILE_QUERIES = 65536


@register("model", "gblsr_asr")
class GBLSRScalarASR(nn.Module):
    """Encoder + :class:`GBLSRScalarASRDecoder`.

    encoder_cfg: keyword config of the encoder (``RDNConfig`` fields for ``rdn``).
    decoder_cfg: ``p_max``, ``bandwidth_init``, ``local_ensemble``.
    encoder:     registered encoder name.
    """

    task = "sr"

    def __init__(
        self,
        encoder_cfg: dict | None = None,
        decoder_cfg: dict | None = None,
        encoder: str = "rdn",
    ):
        super().__init__()
        self.encoder_name = encoder
        enc_cls = lookup("encoder", encoder)
        enc_cfg = dict(encoder_cfg or {})
        self.encoder = enc_cls.from_config(enc_cfg) if hasattr(enc_cls, "from_config") else enc_cls(**enc_cfg)
        self.decoder = GBLSRScalarASRDecoder(in_dim=self.encoder.out_dim, **(decoder_cfg or {}))

    def get_config(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder_name,
            "encoder_cfg": self.encoder.get_config(),
            "decoder_cfg": self.decoder.get_config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "GBLSRScalarASR":
        return cls(**config)

    def forward(
        self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Training interface: lr (B, 3, h, w), coord (B, Q, 2) (y, x) -> RGB (B, Q, 3)."""
        return self.decoder(self.encoder(lr), coord, cell)

    @torch.no_grad()
    def predict_full(
        self, lr: torch.Tensor, H_q: int, W_q: int, tile_q: int | None = DEFAULT_TILE_QUERIES
    ) -> torch.Tensor:
        """Render the whole (B, 3, H_q, W_q) image at pixel centres; no autograd graph.

        ``tile_q`` bounds how many queries are rendered at once (None: all at once); the result
        does not depend on it.
        """
        coef = self.decoder.coefficients(self.encoder(lr))
        b = coef.shape[0]
        coord = make_coord((H_q, W_q), dtype=coef.dtype, device=coef.device)
        total = coord.shape[0]
        step = total if tile_q is None else max(1, int(tile_q))
        parts = [
            self.decoder.query(coef, coord[s : s + step].unsqueeze(0).expand(b, -1, -1))
            for s in range(0, total, step)
        ]
        pred = torch.cat(parts, dim=1)
        return pred.view(b, H_q, W_q, 3).permute(0, 3, 1, 2).contiguous()
