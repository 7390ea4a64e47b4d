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

from ..registry import make, register
from .decoder import GBLSRScalarASRDecoder
from .render import ASRRepresentation, preferred_tile_budget

__all__ = ["GBLSRScalarASR", "DEFAULT_TILE_QUERIES", "ASRRepresentation"]

# At most this many output pixels per tile in predict_full (the tiles are also bounded by
# memory, see ASRRepresentation.tile_shape); None renders the whole image in one piece.
DEFAULT_TILE_QUERIES = 1 << 20


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

    def encode(self, lr: torch.Tensor) -> ASRRepresentation:
        """Encode once, render many: lr (B, 3, h, w) -> :class:`ASRRepresentation`.

        ``rep.render(H, W)`` renders any output size, ``rep.render_region(top, left, height,
        width, H, W)`` one window of it, ``rep.query(coord)`` arbitrary points. Autograd flows
        through when enabled (wrap in ``torch.no_grad()`` for inference).
        """
        return self.representation(self.encode_state(lr), input_size=tuple(lr.shape[-2:]))

    def encode_state(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The compact tensors an encoded image is stored as (feature blobs): the encoder
        output ``features`` (B, D, h, w), 12x smaller than the coefficients at p_max = 16."""
        return {"features": self.encoder(lr)}

    def representation(
        self, state: dict[str, torch.Tensor], input_size: tuple[int, int] | None = None
    ) -> ASRRepresentation:
        """Rebuild the renderable representation from :meth:`encode_state`'s tensors."""
        return self.decoder.encode(state["features"], input_size=input_size)

    @torch.no_grad()
    def predict_full(
        self,
        lr: torch.Tensor,
        H_q: int,
        W_q: int,
        tile_q: int | None = DEFAULT_TILE_QUERIES,
        *,
        max_memory: int | None = None,
    ) -> torch.Tensor:
        """Render the whole (B, 3, H_q, W_q) image at pixel centres; no autograd graph.

        ``tile_q`` bounds the output pixels rendered at once and ``max_memory`` (bytes) the
        renderer's estimated transient memory per tile (default: what renders fastest on the
        device, 128 MiB on the CPU); ``tile_q=None`` without ``max_memory`` renders in one piece.
        The result does not depend on either: tiles are exact windows of the same rendering.
        """
        rep = self.encode(lr)
        if tile_q is None and max_memory is None:
            return rep.render(H_q, W_q, max_pixels=H_q * W_q)
        if max_memory is None:
            max_memory = preferred_tile_budget(rep.device)
        return rep.render(H_q, W_q, max_pixels=tile_q, max_memory=max_memory)
