"""LTE (Lee, Jin, CVPR 2022): local texture estimator, checkpoint-compatible with the official code
(jaewon-lee-b/lte @ a8815d6). LTE+ (``lte-fast``) checkpoints load into this model through a
channel permutation (:func:`gblsr.peers.convert.lte_plus_to_lte`).

From encoder features (B, C, h, w), two 3x3 convs give amplitudes ``coef`` and frequencies
``freq`` (``hidden_dim`` channels each). For a query and one local-ensemble member with offset
(rel_y, rel_x) from the member's latent and cell (c_y, c_x):
  * f_k = freq[2k] * rel_y + freq[2k+1] * rel_x + phase(c_y * h, c_x * w)_k, for the
    hidden_dim / 2 components k (interleaved channel pairs; ``phase`` is a bias-free Linear);
  * the MLP input is coef * [cos(pi f), sin(pi f)] (all cosines first, then all sines);
the members are blended with the area weights, and a bilinear (border-padded) sample of the
normalised LR image is added.

The official test.py and demo.py multiply the cell by max(s / 4, 1) (``cell_clip=4``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..registry import register, register_variant
from ._common import (
    MLP,
    ImplicitSR,
    PeerRepresentation,
    blend,
    ensemble_members,
    gather_rows,
    lr_skip,
    render_chunks,
    rows_table,
    scale_yx,
)

__all__ = ["LTE", "fourier_input"]


def fourier_input(
    q_coef: torch.Tensor, q_freq: torch.Tensor, rel: torch.Tensor, phase: torch.Tensor | None
) -> torch.Tensor:
    """LTE's MLP input: coef * [cos(pi f), sin(pi f)] with f = pairwise freq . rel + phase.

    q_coef, q_freq: (B, Q, 2K); rel: (B, Q, 2) (y, x); phase: (B, Q, K) or None.
    returns (B, Q, 2K).
    """
    b, q, d = q_freq.shape
    pairs = q_freq.view(b, q, d // 2, 2)  # [..., k, 0] pairs with rel_y, [..., k, 1] with rel_x
    f = pairs[..., 0] * rel[..., 0:1] + pairs[..., 1] * rel[..., 1:2]
    if phase is not None:
        f += phase
    return q_coef * torch.cat((torch.cos(math.pi * f), torch.sin(math.pi * f)), dim=-1)


@register("model", "lte")
class LTE(ImplicitSR):
    """Encoder + LTE decoder. Defaults: EDSR-baseline, hidden_dim 256, MLP 256-256-256-256-3
    (1,714,267 parameters)."""

    def __init__(
        self,
        encoder: str = "edsr",
        encoder_cfg: dict | None = None,
        hidden_dim: int = 256,
        hidden: list[int] | tuple[int, ...] = (256, 256, 256),
        cell_clip: float | None = 4.0,
    ):
        super().__init__(encoder, encoder_cfg, cell_clip)
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (got {hidden_dim})")
        self.hidden_dim = int(hidden_dim)
        self.hidden = [int(v) for v in hidden]
        c = self.encoder.out_dim
        self.coef = nn.Conv2d(c, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(c, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        self.imnet = MLP(hidden_dim, 3, self.hidden)

    def get_config(self) -> dict:
        return {**self._base_config(), "hidden_dim": self.hidden_dim, "hidden": list(self.hidden)}

    def bytes_per_query(self) -> int:
        return 4 * 4 * (5 * self.hidden_dim + 2 * sum(self.hidden) + 8)

    def decode_queries(
        self,
        rep: PeerRepresentation,
        coord: torch.Tensor,
        cell: torch.Tensor,
        tile_q: int | None,
        uniform_cell: bool = False,
    ) -> torch.Tensor:
        if "coef" not in rep.cache:
            rep.cache["coef"] = rows_table(self.coef(rep.feat))
            rep.cache["freq"] = rows_table(self.freq(rep.feat))
        coef, freq = rep.cache["coef"], rep.cache["freq"]
        h, w = rep.size

        def query(coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
            b, q = coord.shape[:2]
            members, weights = ensemble_members(coord, h, w)
            phase = self.phase(scale_yx(cell, h, w).reshape(b * q, -1)).view(b, q, -1)
            preds = []
            for m in members:
                x = fourier_input(
                    gather_rows(coef, m.index, h * w),
                    gather_rows(freq, m.index, h * w),
                    m.rel,
                    phase,
                )
                preds.append(self.imnet(x.reshape(b * q, -1)).view(b, q, -1))
            return blend(preds, weights) + lr_skip(rep.inp, coord)

        return render_chunks(query, coord, cell, tile_q)


register_variant("lte_edsr_baseline", "lte", encoder="edsr")
register_variant("lte_rdn", "lte", encoder="rdn")
register_variant("lte_swinir", "lte", encoder="swinir")
