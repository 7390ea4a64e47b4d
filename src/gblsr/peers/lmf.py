"""LMF (He, Jin, CVPR 2024): latent modulated functions, checkpoint-compatible with the official
code (HeZongyao/LMF @ 17e356e): LM-LIIF (``lmliif``) and LM-LTE (``lmlte``).

LMF splits LIIF/LTE's decoder in two:
  * a *latent MLP* (``hypernet``) runs once per LR latent and emits, per latent, FiLM modulations
    for every hidden layer of the render MLP (layer k: scales at channels [16k, 16k + 16), shifts
    at [M/2 + 16k, ...), M = 2 * 16 * depth) and, with ``mod_input``, a compressed code after
    them (LM-LIIF: z (16); LM-LTE: coef' (16), freq' (16)). Its input has no coordinates, only
    the cell, so the modulations depend on the target scale;
  * a small *render MLP* (16 wide) runs per query and ensemble member, on [z, rel_y, rel_x,
    cell * (h, w)] (LM-LIIF) or on coef' * [cos(pi g), sin(pi g)] with g = pairwise freq' . rel +
    imphase(cell * (h, w)) (LM-LTE). Hidden layer k computes relu((W x + b) * (1 + s_k) + t_k),
    with (s_k, t_k) of the latent the member picked. The members are blended as in LIIF; LM-LTE
    adds LTE's bilinear LR skip.

The latent MLP takes its cell from the first h * w queries (all queries of a full image share
one). The test-time cell is multiplied by max(s / 4, 1) (``cell_clip=4``). CMSR (controllable
multi-scale rendering, :mod:`gblsr.peers.cmsr`) is available through ``predict_full(...,
cmsr=TABLE)``.

Differences from the official code, none of which changes a number it produces:
  * batches: official LM-LTE accepts B > 1 only when every image has exactly h * w queries, and
    CMSR only B = 1; here any batch works (CMSR runs image by image);
  * fewer than h * w queries: the latent MLP uses the first query's cell for every latent
    (the official code raises).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register, register_variant
from ._common import (
    AUTO,
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
from .lte import fourier_input

__all__ = ["LatentModulatedMLP", "LMLIIF", "LMLTE", "Modulations", "LMFRepresentation"]


class LatentModulatedMLP(nn.Module):
    """The render MLP: ``depth`` FiLM-modulated hidden Linear+ReLU layers and a Linear output;
    keys ``layers.{0, 2, ..., 2 * depth}``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 3,
        hidden_dim: int = 16,
        hidden_depth: int = 6,
        mod_scale: bool = True,
        mod_shift: bool = True,
    ):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.hidden_depth = hidden_depth
        self.mod_scale = mod_scale
        self.mod_shift = mod_shift
        layers: list[nn.Module] = []
        last = in_dim
        for _ in range(hidden_depth):
            layers += [nn.Linear(last, hidden_dim), nn.ReLU(inplace=True)]
            last = hidden_dim
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    @property
    def mod_dim(self) -> int:
        """Modulation channels the latent MLP emits for this render MLP."""
        return (int(self.mod_scale) + int(self.mod_shift)) * self.hidden_dim * self.hidden_depth

    def mod_slices(self) -> list[tuple[slice | None, slice | None]]:
        """(scale, shift) channel slices of every hidden layer (None when not modulated)."""
        d = self.hidden_dim
        mid = self.mod_dim // 2 if (self.mod_scale and self.mod_shift) else 0
        out = []
        for k in range(self.hidden_depth):
            s = slice(k * d, (k + 1) * d) if self.mod_scale else None
            t = slice(mid + k * d, mid + (k + 1) * d) if self.mod_shift else None
            out.append((s, t))
        return out

    def forward(
        self, x: torch.Tensor, scales: list[torch.Tensor | None], shifts: list[torch.Tensor | None]
    ) -> torch.Tensor:
        """x (N, in_dim); scales/shifts: per hidden layer (N, hidden_dim) or None."""
        for k in range(self.hidden_depth):
            x = self.layers[2 * k](x)
            if scales[k] is not None:
                x *= scales[k] + 1.0
            if shifts[k] is not None:
                x += shifts[k]
            x = torch.relu_(x)
        return self.layers[-1](x)


@dataclass
class Modulations:
    """The latent MLP's output for one image batch at one target cell.

    mod:    (B * h * w, D) rows, one per latent (row-major within each image)
    scales, shifts: per render layer, (B * h * w, hidden_dim) contiguous tables or None
    codes:  the render input tables (LM-LIIF: [z]; LM-LTE: [coef', freq'])
    """

    mod: torch.Tensor
    scales: list[torch.Tensor | None]
    shifts: list[torch.Tensor | None]
    codes: list[torch.Tensor]
    size: tuple[int, int]


class _LMF(ImplicitSR):
    """What LM-LIIF and LM-LTE share: the latent MLP's output layout, the modulated render, the
    cell the latent MLP sees, CMSR."""

    # The largest training scale: CMSR's trigger and its per-level cell clip.
    max_scale = 4
    # LM-LTE's CMSR resamples the last level only when its grid is not the query raster.
    _cmsr_check_raster = False
    # init_cmsr walks the intensities 0, 0.01, ..., cmsr_sample_max.
    cmsr_sample_max = 1

    def _init_lmf(self, imnet: LatentModulatedMLP, local_ensemble: bool, cell_decode: bool):
        self.local_ensemble = bool(local_ensemble)
        self.cell_decode = bool(cell_decode)
        self.imnet = imnet

    @property
    def mod_dim(self) -> int:
        return self.imnet.mod_dim

    def _lmf_config(self) -> dict:
        im = self.imnet
        return {
            "local_ensemble": self.local_ensemble,
            "cell_decode": self.cell_decode,
            "mod_input": self.mod_input,
            "hidden_dim": im.hidden_dim,
            "hidden_depth": im.hidden_depth,
            "mod_scale": im.mod_scale,
            "mod_shift": im.mod_shift,
            "hypernet_hidden": list(self.hypernet_hidden),
        }

    # -- latent side ---------------------------------------------------------------------------
    def latent_maps(self, rep: PeerRepresentation) -> tuple[torch.Tensor, ...]:
        """The (B, C, h, w) maps both MLP inputs are made of (LM-LIIF: features; LM-LTE: coef,
        freq)."""
        raise NotImplementedError

    def latent_input(self, maps: tuple, rel_cell: torch.Tensor | None) -> torch.Tensor:
        """(B, h * w, D_in) input of the latent MLP; rel_cell (B, h * w, 2) or None."""
        raise NotImplementedError

    def render_sources(self, maps: tuple, mod: torch.Tensor) -> list[torch.Tensor]:
        """(B * h * w, D) tables the render input is gathered from."""
        raise NotImplementedError

    def modulations(self, rep: PeerRepresentation, cell: torch.Tensor) -> Modulations:
        """Run the latent MLP for target cells ``cell`` (B, Q, 2); as the official code does,
        latent p takes the cell of query p (all equal for a full image)."""
        b = rep.batch_size
        h, w = rep.size
        rel_cell = None
        if self.cell_decode:
            if cell.shape[1] >= h * w:
                rel_cell = scale_yx(cell[:, : h * w], h, w)
            else:
                rel_cell = scale_yx(cell[:, :1], h, w).expand(b, h * w, 2)
        maps = self.latent_maps(rep)
        mod = self.hypernet(self.latent_input(maps, rel_cell)).reshape(b * h * w, -1)
        scales, shifts = [], []
        for s, t in self.imnet.mod_slices():
            scales.append(None if s is None else mod[:, s].contiguous())
            shifts.append(None if t is None else mod[:, t].contiguous())
        return Modulations(mod, scales, shifts, self.render_sources(maps, mod), (h, w))

    def mod_mean(self, mods: Modulations) -> torch.Tensor:
        """(B, 1, h, w) mean |modulation| over channels [M/2, M) (the shifts): CMSR's intensity."""
        h, w = mods.size
        d = mods.mod.shape[-1]
        mod_map = mods.mod.view(-1, h, w, d).permute(0, 3, 1, 2).contiguous()
        return torch.mean(torch.abs(mod_map[:, self.mod_dim // 2 : self.mod_dim]), 1, keepdim=True)

    # -- render side ---------------------------------------------------------------------------
    def render_input(
        self, mods: Modulations, index: torch.Tensor, rel: torch.Tensor, rel_cell: torch.Tensor
    ) -> torch.Tensor:
        """(B, N, D) render-MLP input of N (member, query) rows."""
        raise NotImplementedError

    def query_modulated(
        self, rep: PeerRepresentation, mods: Modulations, coord: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """(B, Q, 3) in [-1, 1] for queries coord/cell (B, Q, 2), given the modulations."""
        b, q = coord.shape[:2]
        h, w = mods.size
        members, weights = ensemble_members(coord, h, w, self.local_ensemble)
        n = len(members)
        # Member-major rows (member, query) per image, as the official fast path lays them out.
        index = torch.cat([m.index for m in members], dim=1)
        rel = torch.cat([m.rel for m in members], dim=1)
        rel_cell = torch.cat([scale_yx(cell, h, w)] * n, dim=1) if self.cell_decode else None
        x = self.render_input(mods, index, rel, rel_cell)
        x = x.reshape(b * n * q, -1)
        rows = (index + torch.arange(b, device=index.device).view(b, 1) * (h * w)).reshape(-1)
        scales = [None if t is None else t.index_select(0, rows) for t in mods.scales]
        shifts = [None if t is None else t.index_select(0, rows) for t in mods.shifts]
        preds = self.imnet(x, scales, shifts).view(b, n, q, -1).permute(1, 0, 2, 3)
        return self.finish(rep, blend(list(preds), weights), coord)

    def finish(self, rep: PeerRepresentation, out: torch.Tensor, coord: torch.Tensor):
        return out

    def bytes_per_query(self) -> int:
        im = self.imnet
        width = im.layers[0].in_features + 3 * im.hidden_dim + 16
        return 4 * 4 * width

    def decode_queries(
        self,
        rep: PeerRepresentation,
        coord: torch.Tensor,
        cell: torch.Tensor,
        tile_q: int | None,
        uniform_cell: bool = False,
    ) -> torch.Tensor:
        if uniform_cell:  # every query shares cell[0, 0]: reuse the modulations of that cell
            key = ("mods", tuple(cell[:, 0].flatten().tolist()))
            mods = rep.cache.get(key)
            if mods is None:
                rep.cache.clear()
                mods = rep.cache[key] = self.modulations(rep, cell)
        else:
            mods = self.modulations(rep, cell)
        return render_chunks(
            lambda c, ce: self.query_modulated(rep, mods, c, ce), coord, cell, tile_q
        )


class LMFRepresentation(PeerRepresentation):
    """:class:`PeerRepresentation` whose :meth:`render` can use CMSR. The latent MLP's output
    for the last target cell is cached, so rendering an image band by band runs it once."""

    def render(
        self,
        H: int,
        W: int,
        max_pixels: int | None = None,
        max_memory: int | None = None,
        out: torch.Tensor | None = None,
        cell_clip=AUTO,
        cmsr=None,
        cmsr_exact_grid: bool = False,
    ) -> torch.Tensor:
        """:meth:`Representation.render`, or with ``cmsr=TABLE`` (a table dict or YAML path)
        CMSR above the largest training scale (``cmsr_exact_grid``: exact level grids)."""
        h, w = self.size
        if cmsr is None or H * W <= self.model.max_scale**2 * h * w:
            return super().render(H, W, max_pixels, max_memory, out, cell_clip=cell_clip)
        from .cmsr import load_tables, render_cmsr

        tables = load_tables(cmsr)
        rows, cols = self.tile_shape(H, W, max_pixels, max_memory)
        tile = rows * cols
        outs = []
        for i in range(self.batch_size):  # the official CMSR handles one image at a time
            one = PeerRepresentation(self.model, self.inp[i : i + 1], self.feat[i : i + 1])
            outs.append(
                render_cmsr(self.model, one, H, W, tables, tile, cell_clip, cmsr_exact_grid)
            )
        result = torch.cat(outs, dim=0)
        return result if out is None else out.copy_(result)


_LMF.representation_class = LMFRepresentation


@register("model", "lmliif")
class LMLIIF(_LMF):
    """LM-LIIF. Defaults (the official EDSR-baseline config): latent MLP 578-208-208, render MLP
    20-16x6-3 with scale and shift modulations and the compressed code; 1,386,091 parameters."""

    def __init__(
        self,
        encoder: str = "edsr",
        encoder_cfg: dict | None = None,
        hidden_dim: int = 16,
        hidden_depth: int = 6,
        hypernet_hidden: list[int] | tuple[int, ...] = (208,),
        mod_scale: bool = True,
        mod_shift: bool = True,
        mod_input: bool = True,
        local_ensemble: bool = True,
        feat_unfold: bool = True,
        cell_decode: bool = True,
        cell_clip: float | None = 4.0,
    ):
        super().__init__(encoder, encoder_cfg, cell_clip)
        self.feat_unfold = bool(feat_unfold)
        self.mod_input = bool(mod_input)
        self.hypernet_hidden = [int(v) for v in hypernet_hidden]
        c = self.encoder.out_dim
        in_dim = c * (9 if feat_unfold else 1) + (2 if cell_decode else 0)
        imnet_in = (hidden_dim if mod_input else c) + 2 + (2 if cell_decode else 0)
        imnet = LatentModulatedMLP(imnet_in, 3, hidden_dim, hidden_depth, mod_scale, mod_shift)
        out_dim = imnet.mod_dim + (hidden_dim if mod_input else 0)
        self.hypernet = MLP(in_dim, out_dim, self.hypernet_hidden)
        self._init_lmf(imnet, local_ensemble, cell_decode)

    def get_config(self) -> dict:
        return {**self._base_config(), **self._lmf_config(), "feat_unfold": self.feat_unfold}

    def latent_maps(self, rep: PeerRepresentation) -> tuple[torch.Tensor, ...]:
        return (rep.feat,)

    def latent_input(self, maps: tuple, rel_cell: torch.Tensor | None) -> torch.Tensor:
        (feat,) = maps
        b, c, h, w = feat.shape
        if self.feat_unfold:
            feat = F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)
        x = feat.permute(0, 2, 3, 1).contiguous().view(b, h * w, -1)
        return x if rel_cell is None else torch.cat([x, rel_cell], dim=-1)

    def render_sources(self, maps: tuple, mod: torch.Tensor) -> list[torch.Tensor]:
        if self.mod_input:
            return [mod[:, self.mod_dim :].contiguous()]
        return [rows_table(maps[0])]

    def render_input(self, mods, index, rel, rel_cell):
        h, w = mods.size
        parts = [gather_rows(mods.codes[0], index, h * w), rel]
        if rel_cell is not None:
            parts.append(rel_cell)
        return torch.cat(parts, dim=-1)


@register("model", "lmlte")
class LMLTE(_LMF):
    """LM-LTE. Defaults (the official EDSR-baseline config): coef/freq convs 64->128, latent MLP
    128-288-288, render MLP 16-16x8-3 with scale and shift modulations, coef'/freq' codes and
    ``imphase``, plus LTE's LR skip; 1,490,907 parameters."""

    _cmsr_check_raster = True
    # init_cmsr walks intensities 0, 0.005, ..., 0.5 for LM-LTE.
    cmsr_sample_max = 0.5

    def __init__(
        self,
        encoder: str = "edsr",
        encoder_cfg: dict | None = None,
        lte_dim: int = 128,
        hidden_dim: int = 16,
        hidden_depth: int = 8,
        hypernet_hidden: list[int] | tuple[int, ...] = (288,),
        mod_scale: bool = True,
        mod_shift: bool = True,
        mod_input: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        cell_clip: float | None = 4.0,
    ):
        super().__init__(encoder, encoder_cfg, cell_clip)
        if lte_dim % 2 or hidden_dim % 2:
            raise ValueError("lte_dim and hidden_dim must be even")
        self.lte_dim = int(lte_dim)
        self.mod_input = bool(mod_input)
        self.hypernet_hidden = [int(v) for v in hypernet_hidden]
        c = self.encoder.out_dim
        self.coef = nn.Conv2d(c, lte_dim, 3, padding=1)
        self.freq = nn.Conv2d(c, lte_dim, 3, padding=1)
        self.phase = nn.Linear(2, lte_dim // 2, bias=False)
        imnet = LatentModulatedMLP(
            hidden_dim if mod_input else lte_dim, 3, hidden_dim, hidden_depth, mod_scale, mod_shift
        )
        out_dim = imnet.mod_dim + (2 * hidden_dim if mod_input else 0)
        self.hypernet = MLP(lte_dim, out_dim, self.hypernet_hidden)
        if mod_input:
            self.imphase = nn.Linear(2, hidden_dim // 2, bias=False)
        self._init_lmf(imnet, local_ensemble, cell_decode)

    def get_config(self) -> dict:
        return {**self._base_config(), **self._lmf_config(), "lte_dim": self.lte_dim}

    def latent_maps(self, rep: PeerRepresentation) -> tuple[torch.Tensor, ...]:
        return self.coef(rep.feat), self.freq(rep.feat)

    def latent_input(self, maps: tuple, rel_cell: torch.Tensor | None) -> torch.Tensor:
        coef, freq = maps
        b, d, h, w = coef.shape
        coef = coef.permute(0, 2, 3, 1).contiguous().view(b, h * w, d)
        freq = freq.permute(0, 2, 3, 1).contiguous().view(b, h * w, d // 2, 2)
        f = freq[..., 0] + freq[..., 1]
        if rel_cell is not None:
            f += self.phase(rel_cell.reshape(b * h * w, -1)).view(b, h * w, -1)
        return coef * torch.cat((torch.cos(torch.pi * f), torch.sin(torch.pi * f)), dim=-1)

    def render_sources(self, maps: tuple, mod: torch.Tensor) -> list[torch.Tensor]:
        if self.mod_input:
            d = self.imnet.hidden_dim
            m = self.mod_dim
            return [mod[:, m : m + d].contiguous(), mod[:, m + d :].contiguous()]
        return [rows_table(maps[0]), rows_table(maps[1])]

    def render_input(self, mods, index, rel, rel_cell):
        h, w = mods.size
        b, n = index.shape
        phase = None
        if rel_cell is not None:
            layer = self.imphase if self.mod_input else self.phase
            phase = layer(rel_cell.reshape(b * n, -1)).view(b, n, -1)
        q_coef = gather_rows(mods.codes[0], index, h * w)
        q_freq = gather_rows(mods.codes[1], index, h * w)
        return fourier_input(q_coef, q_freq, rel, phase)

    def finish(self, rep: PeerRepresentation, out: torch.Tensor, coord: torch.Tensor):
        out += lr_skip(rep.inp, coord)
        return out


register_variant("lmliif_edsr_baseline", "lmliif", encoder="edsr")
register_variant("lmliif_rdn", "lmliif", encoder="rdn")
register_variant("lmlte_edsr_baseline", "lmlte", encoder="edsr")
register_variant("lmlte_rdn", "lmlte", encoder="rdn")
