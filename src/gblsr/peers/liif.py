"""LIIF (Chen, Liu, Wang, CVPR 2021): local implicit image function, checkpoint-compatible with the
official code (yinboc/liif @ 4c833f8).

A query (y, x) with cell (c_y, c_x) of an image whose encoder features are (B, C, h, w):
  * feature unfolding: each latent is replaced by its zero-padded 3x3 neighbourhood, channel
    index ``c * 9 + ky * 3 + kx``;
  * each local-ensemble member (see :mod:`gblsr.peers._common`) feeds
    ``[unfolded latent, rel_y, rel_x, c_y * h, c_x * w]`` (C * 9 + 4 values) to the MLP;
  * the members are blended with the area weights. No output activation, no skip.

State-dict keys equal the official ones (``encoder.*``, ``imnet.layers.{0,2,...}``). The test-time
cell is not clipped (``cell_clip=None``), as in LIIF's own test.py; LTE's test.py clips LIIF
checkpoints too (pass ``cell_clip=4`` to predict_full for that protocol).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import register, register_variant
from ._common import (
    MLP,
    ImplicitSR,
    PeerRepresentation,
    blend,
    ensemble_members,
    gather_rows,
    render_chunks,
    rows_table,
    scale_yx,
)

__all__ = ["LIIF"]


@register("model", "liif")
class LIIF(ImplicitSR):
    """Encoder + LIIF decoder. Defaults: EDSR-baseline, MLP 580-256-256-256-256-3 (1,567,323
    parameters)."""

    def __init__(
        self,
        encoder: str = "edsr",
        encoder_cfg: dict | None = None,
        hidden: list[int] | tuple[int, ...] = (256, 256, 256, 256),
        local_ensemble: bool = True,
        feat_unfold: bool = True,
        cell_decode: bool = True,
        cell_clip: float | None = None,
    ):
        super().__init__(encoder, encoder_cfg, cell_clip)
        self.hidden = [int(v) for v in hidden]
        self.local_ensemble = bool(local_ensemble)
        self.feat_unfold = bool(feat_unfold)
        self.cell_decode = bool(cell_decode)
        in_dim = self.encoder.out_dim * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = MLP(in_dim, 3, self.hidden)

    def get_config(self) -> dict:
        return {
            **self._base_config(),
            "hidden": list(self.hidden),
            "local_ensemble": self.local_ensemble,
            "feat_unfold": self.feat_unfold,
            "cell_decode": self.cell_decode,
        }

    def latent_table(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> rows the latents are gathered from: (B * (h + 2) * (w + 2),
        C) of the zero-padded map with unfolding (see :meth:`gather_latents`), else
        (B * h * w, C)."""
        if self.feat_unfold:
            feat = F.pad(feat, (1, 1, 1, 1))
        return rows_table(feat)

    def gather_latents(self, table: torch.Tensor, index: torch.Tensor, h: int, w: int):
        """(B, Q, C * 9) unfolded latents (channel c * 9 + ky * 3 + kx, zero padded) at flat
        latent indices (B, Q): the 3 x 3 neighbourhood is gathered per query, so the 9x larger
        unfolded map is never built (the values are the same)."""
        if not self.feat_unfold:
            return gather_rows(table, index, h * w)
        b, q = index.shape
        wp = w + 2
        # top-left of the neighbourhood in the padded map = (r, c) of the latent itself
        corner = (index // w) * wp + index % w
        offsets = torch.tensor(
            [ky * wp + kx for ky in range(3) for kx in range(3)], device=index.device
        )
        rows = (corner.unsqueeze(-1) + offsets).view(b, q * 9)
        nb = gather_rows(table, rows, (h + 2) * wp)  # (B, Q * 9, C)
        return nb.view(b, q, 9, -1).transpose(2, 3).reshape(b, q, -1)

    def bytes_per_query(self) -> int:
        return 4 * 4 * (self.imnet.layers[0].in_features + 2 * sum(self.hidden) + 8)

    def decode_queries(
        self,
        rep: PeerRepresentation,
        coord: torch.Tensor,
        cell: torch.Tensor,
        tile_q: int | None,
        uniform_cell: bool = False,
    ) -> torch.Tensor:
        table = rep.cache.get("table")
        if table is None:
            table = rep.cache["table"] = self.latent_table(rep.feat)
        h, w = rep.size

        def query(coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
            b, q = coord.shape[:2]
            members, weights = ensemble_members(coord, h, w, self.local_ensemble)
            rel_cell = scale_yx(cell, h, w) if self.cell_decode else None
            preds = []
            for m in members:
                parts = [self.gather_latents(table, m.index, h, w), m.rel]
                if rel_cell is not None:
                    parts.append(rel_cell)
                inp = torch.cat(parts, dim=-1)
                preds.append(self.imnet(inp.view(b * q, -1)).view(b, q, -1))
            return blend(preds, weights)

        return render_chunks(query, coord, cell, tile_q)


register_variant("liif_edsr_baseline", "liif", encoder="edsr")
register_variant("liif_rdn", "liif", encoder="rdn")
register_variant("liif_swinir", "liif", encoder="swinir")
