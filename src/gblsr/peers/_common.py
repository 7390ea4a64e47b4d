"""What LIIF, LTE and LMF share: the [-1, 1] data range, LIIF's local ensemble, the plain MLP,
chunked full-image rendering.

Local ensemble (the rules that decide the last bits, shared by all three methods):
  * a query (y, x) is shifted by (vy / h + 1e-6, vx / w + 1e-6) for the corners (vy, vx) in the
    order (-1, -1), (-1, +1), (+1, -1), (+1, +1); each shift is one pre-summed double added once;
    the shifted point is clamped to +-(1 - 1e-6);
  * the latent a corner uses is the one ``grid_sample(mode='nearest', align_corners=False)``
    picks at the shifted point (round half to even of ``((c + 1) n - 1) / 2`` in float32); we
    look its number up on a map of latent numbers, which reproduces the kernel's choice exactly;
  * the relative coordinate uses the unshifted query: ``(q - centre) * (h, w)``, in [-2, 2];
  * weights: area_k = |rel_y * rel_x| + 1e-9; total = sum of the four (stacked and summed);
    corner k is weighted by the area of the diagonally opposite corner over the total, and the
    blend is accumulated in corner order from 0.
Without the local ensemble there is one member, no shift and weight 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry import make_coord

__all__ = [
    "SHIFT_EPS",
    "CLAMP",
    "AREA_EPS",
    "DEFAULT_TILE_QUERIES",
    "normalize",
    "denormalize",
    "MLP",
    "Member",
    "ensemble_members",
    "blend",
    "gather_rows",
    "rows_table",
    "lr_skip",
    "full_grid",
    "cell_factor",
    "nominal_scale",
    "render_chunks",
    "scale_yx",
    "region_grid",
    "AUTO",
    "PeerRepresentation",
    "ImplicitSR",
]

SHIFT_EPS = 1e-6
CLAMP = 1.0 - 1e-6
AREA_EPS = 1e-9
# Queries per chunk in predict_full (the official test configs use 30,000).
DEFAULT_TILE_QUERIES = 30000


def normalize(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the [-1, 1] range the official models work in (``(x - 0.5) / 0.5``)."""
    return (img - 0.5) / 0.5


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (``x * 0.5 + 0.5``), not clamped."""
    return x * 0.5 + 0.5


class MLP(nn.Module):
    """Linear -> ReLU -> ... -> Linear over the last axis; keys ``layers.{0, 2, ...}``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.layers(x.reshape(-1, x.shape[-1])).view(*lead, -1)


@dataclass
class Member:
    """One local-ensemble member for a batch of queries.

    index: (B, Q) int64, flat latent index (row * w + col) within its image
    rel:   (B, Q, 2) offset of the query from that latent's centre, times (h, w)
    """

    index: torch.Tensor
    rel: torch.Tensor


def _latent_numbers(b: int, h: int, w: int, device, dtype) -> torch.Tensor:
    numbers = torch.arange(h * w, device=device, dtype=dtype).view(1, 1, h, w)
    return numbers.expand(b, 1, h, w)


def _pick(coord_: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, Q, 2) shifted, clamped (y, x) -> (B, Q) flat index of the nearest latent."""
    b = coord_.shape[0]
    # float32 holds latent numbers exactly up to 2^24.
    dtype = torch.float64 if coord_.dtype == torch.float64 else torch.float32
    numbers = _latent_numbers(b, h, w, coord_.device, dtype)
    picked = F.grid_sample(
        numbers, coord_.to(dtype).flip(-1).unsqueeze(1), mode="nearest", align_corners=False
    )
    return picked[:, 0, 0, :].long()


def ensemble_members(
    coord: torch.Tensor, h: int, w: int, local_ensemble: bool = True
) -> tuple[list[Member], list[torch.Tensor]]:
    """The ensemble members of queries ``coord`` (B, Q, 2) (y, x) on an (h, w) latent grid.

    returns (members, areas): areas[k] = |rel_y rel_x| + 1e-9 of member k, (B, Q), unswapped.
    """
    shifts = [(vy, vx) for vy in (-1, 1) for vx in (-1, 1)] if local_ensemble else [(0, 0)]
    eps = SHIFT_EPS if local_ensemble else 0.0
    ry, rx = 2 / h / 2, 2 / w / 2
    cy = make_coord((h,), dtype=coord.dtype, device=coord.device).view(-1)
    cx = make_coord((w,), dtype=coord.dtype, device=coord.device).view(-1)
    members, areas = [], []
    for vy, vx in shifts:
        shifted = coord.clone()
        shifted[..., 0] += vy * ry + eps
        shifted[..., 1] += vx * rx + eps
        shifted.clamp_(-CLAMP, CLAMP)
        index = _pick(shifted, h, w)
        rel = torch.empty_like(coord)
        rel[..., 0] = (coord[..., 0] - cy[index // w]) * h
        rel[..., 1] = (coord[..., 1] - cx[index % w]) * w
        members.append(Member(index, rel))
        areas.append(torch.abs(rel[..., 0] * rel[..., 1]) + AREA_EPS)
    return members, areas


def blend(preds: list[torch.Tensor], areas: list[torch.Tensor]) -> torch.Tensor:
    """Area-weighted sum of the members' predictions (B, Q, C), LIIF's rule (see module doc)."""
    if len(preds) == 1:
        return preds[0]  # LIIF divides the single area by itself: a weight of exactly 1
    total = torch.stack(areas).sum(dim=0)
    swapped = [areas[3], areas[2], areas[1], areas[0]]
    out = 0
    for pred, area in zip(preds, swapped):
        out = out + pred * (area / total).unsqueeze(-1)
    return out


def rows_table(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B * h * w, C) contiguous rows for :func:`gather_rows`."""
    b, c, h, w = fmap.shape
    return fmap.permute(0, 2, 3, 1).reshape(b * h * w, c)


def gather_rows(table: torch.Tensor, index: torch.Tensor, hw: int) -> torch.Tensor:
    """Rows of a :func:`rows_table` at per-image flat indices (B, Q) -> (B, Q, C)."""
    b, q = index.shape
    base = torch.arange(b, device=index.device).view(b, 1) * hw
    return table.index_select(0, (index + base).reshape(-1)).view(b, q, -1)


def lr_skip(inp: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """Bilinear, border-padded sample of the (normalised) LR image at (y, x) queries: (B, Q, 3)."""
    out = F.grid_sample(
        inp,
        coord.flip(-1).unsqueeze(1),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return out[:, :, 0, :].permute(0, 2, 1)


def full_grid(
    b: int, H: int, W: int, factor: float, dtype: torch.dtype, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres (B, H*W, 2) of an H x W output and their cells (2/H, 2/W) * factor."""
    coord = make_coord((H, W), dtype=dtype, device=device).unsqueeze(0).expand(b, -1, -1)
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / H
    cell[..., 1] *= 2 / W
    if factor != 1:
        cell = cell * factor
    return coord, cell


def nominal_scale(h: int, w: int, H: int, W: int) -> float:
    """The scale of an (h, w) -> (H, W) render, sqrt(HW / hw) (exact for integer scales)."""
    return math.sqrt(H * W / (h * w))


def cell_factor(scale: float, cell_clip: float | None) -> float:
    """The official test-time cell multiplier max(s / clip, 1) (LTE, LMF: clip 4), or 1."""
    if cell_clip is None:
        return 1
    return max(scale / cell_clip, 1)


def render_chunks(
    query: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    coord: torch.Tensor,
    cell: torch.Tensor,
    tile_q: int | None,
) -> torch.Tensor:
    """``query`` over consecutive slices of the query axis, concatenated (chunking-invariant)."""
    n = coord.shape[1]
    step = n if not tile_q else max(1, int(tile_q))
    parts = [query(coord[:, s : s + step], cell[:, s : s + step]) for s in range(0, n, step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


# ---------------------------------------------------------------------------------------------
# The shared model interface


def scale_yx(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(..., 2) (y, x) values times (h, w): cells in [-1, 1] units -> latent-cell units."""
    out = t.clone()
    out[..., 0] *= h
    out[..., 1] *= w
    return out


# The cell_clip default of the render methods: the model's own (its repository's test rule).
AUTO = "auto"
# Working memory per tile when neither max_pixels nor max_memory is given (bytes).
DEFAULT_RENDER_BUDGET = 256 << 20


def region_grid(
    b: int,
    top: int,
    left: int,
    height: int,
    width: int,
    H: int,
    W: int,
    factor: float,
    dtype: torch.dtype,
    device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres (B, height * width, 2) of a window of an H x W output, bit-equal to the
    same pixels of :func:`full_grid`, and their cells."""
    if (top, left, height, width) == (0, 0, H, W):
        return full_grid(b, H, W, factor, dtype, device)
    ys = make_coord((H,), dtype=dtype, device=device).view(-1)[top : top + height]
    xs = make_coord((W,), dtype=dtype, device=device).view(-1)[left : left + width]
    coord = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).view(1, -1, 2)
    coord = coord.expand(b, -1, -1)
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / H
    cell[..., 1] *= 2 / W
    if factor != 1:
        cell = cell * factor
    return coord, cell


class PeerRepresentation:
    """An encoded image of a peer model: render it at any size, any number of times.

    Built by ``model.encode(lr)``. ``inp`` is the normalised input (B, 3, h, w) in [-1, 1],
    ``feat`` the encoder output. Every output is in [0, 1] (unclamped). The cell rule is the
    model's (``cell_clip="auto"``) unless overridden.
    """

    def __init__(self, model: ImplicitSR, inp: torch.Tensor, feat: torch.Tensor):
        self.model = model
        self.inp = inp
        self.feat = feat
        self.cache: dict = {}  # per-target-cell decoder state (LMF's modulations)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.feat.shape[-2]), int(self.feat.shape[-1])

    feature_size = size

    @property
    def device(self) -> torch.device:
        return self.feat.device

    @property
    def batch_size(self) -> int:
        return int(self.inp.shape[0])

    def __repr__(self) -> str:
        h, w = self.size
        return (
            f"PeerRepresentation({self.model.registry_name}, batch={self.batch_size}, "
            f"features={h}x{w}, dtype={self.feat.dtype}, device={self.feat.device})"
        )

    def _tile(self, max_pixels: int | None, max_memory: int | None) -> int:
        if max_pixels is None and max_memory is None:
            max_memory = DEFAULT_RENDER_BUDGET
        per_query = self.batch_size * self.model.bytes_per_query()
        tile = max(1, max_memory // per_query) if max_memory is not None else None
        if max_pixels is not None:
            tile = max(1, int(max_pixels)) if tile is None else min(tile, int(max_pixels))
        return tile

    def query(self, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Arbitrary points: coord, cell (B, Q, 2) (y, x) -> (B, Q, 3)."""
        return denormalize(self.model.decode_queries(self, coord, cell, None))

    def render_region(
        self,
        top: int,
        left: int,
        height: int,
        width: int,
        H: int,
        W: int,
        max_pixels: int | None = None,
        max_memory: int | None = None,
        cell_clip=AUTO,
    ) -> torch.Tensor:
        """Window [top, top + height) x [left, left + width) of the H x W rendering:
        (B, 3, height, width), equal to the same pixels of :meth:`render`."""
        if not (0 <= top and height >= 1 and top + height <= H):
            raise ValueError(f"rows [{top}, {top + height}) are not inside the {H} output rows")
        if not (0 <= left and width >= 1 and left + width <= W):
            raise ValueError(f"columns [{left}, {left + width}) are not inside the {W} columns")
        h, w = self.size
        factor = self.model.test_cell_factor(h, w, H, W, cell_clip)
        coord, cell = region_grid(
            self.batch_size,
            top,
            left,
            height,
            width,
            H,
            W,
            factor,
            self.inp.dtype,
            self.inp.device,
        )
        tile = self._tile(max_pixels, max_memory)
        pred = self.model.decode_queries(self, coord, cell, tile, uniform_cell=True)
        out = denormalize(pred).view(self.batch_size, height, width, -1)
        return out.permute(0, 3, 1, 2).contiguous()

    def render(
        self,
        H: int,
        W: int,
        max_pixels: int | None = None,
        max_memory: int | None = None,
        cell_clip=AUTO,
    ) -> torch.Tensor:
        """The whole (B, 3, H, W) rendering at pixel centres; ``max_pixels`` / ``max_memory``
        (bytes) bound the queries decoded at once (the result does not depend on them)."""
        return self.render_region(0, 0, H, W, H, W, max_pixels, max_memory, cell_clip)

    def iter_rows(
        self,
        H: int,
        W: int,
        max_pixels: int | None = None,
        max_memory: int | None = None,
        cell_clip=AUTO,
    ):
        """Yield ``(top, band)``: full-width bands (B, 3, rows, W) of the H x W rendering."""
        rows = max(1, self._tile(max_pixels, max_memory) // W)
        for top in range(0, H, rows):
            n = min(rows, H - top)
            yield top, self.render_region(top, 0, n, W, H, W, None, None, cell_clip)


class ImplicitSR(nn.Module):
    """Base of the peer models: an encoder, a decoder queried at (y, x) points with cells.

    Subclasses implement :meth:`decode_queries`. Images enter and leave in [0, 1]; the
    official [-1, 1] normalisation happens inside. ``cell_clip`` is the test-time cell rule of
    the method's repository: the cell of a x s render is multiplied by max(s / cell_clip, 1)
    (None: no clipping), with s = sqrt(H W / (h w)).
    """

    task = "sr"

    def __init__(self, encoder: str, encoder_cfg: dict | None, cell_clip: float | None):
        super().__init__()
        from ..registry import make

        self.encoder_name = encoder
        self.encoder = make("encoder", encoder, **(encoder_cfg or {}))
        self.cell_clip = None if cell_clip is None else float(cell_clip)

    def _base_config(self) -> dict:
        return {
            "encoder": self.encoder_name,
            "encoder_cfg": self.encoder.get_config(),
            "cell_clip": self.cell_clip,
        }

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def bytes_per_query(self) -> int:
        """Rough transient memory of decoding one query (one image), for tiling."""
        return 4096

    # The representation type :meth:`representation` builds (LMF's adds CMSR).
    representation_class: type = PeerRepresentation

    def encode(self, lr: torch.Tensor) -> PeerRepresentation:
        """lr (B, 3, h, w) in [0, 1] -> :class:`PeerRepresentation`."""
        return self.representation(self.encode_state(lr))

    def encode_state(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors an encoded image is stored as: the normalised input ``inp`` (LTE's skip
        and LMF read it) and the encoder output ``feat``."""
        inp = normalize(lr)
        return {"inp": inp, "feat": self.encoder(inp)}

    def representation(
        self, state: dict[str, torch.Tensor], input_size: tuple[int, int] | None = None
    ) -> PeerRepresentation:
        """Rebuild the renderable representation from :meth:`encode_state`'s tensors."""
        return self.representation_class(self, state["inp"], state["feat"])

    def decode_queries(
        self,
        rep: PeerRepresentation,
        coord: torch.Tensor,
        cell: torch.Tensor,
        tile_q: int | None,
    ) -> torch.Tensor:
        """(B, Q, 2) (y, x) queries with their cells -> (B, Q, 3) in the [-1, 1] range."""
        raise NotImplementedError

    def forward(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Training interface: lr (B, 3, h, w), coord/cell (B, Q, 2) (y, x) -> RGB (B, Q, 3) in
        [0, 1] (unclamped)."""
        return denormalize(self.decode_queries(self.encode(lr), coord, cell, None))

    def test_cell_factor(self, h: int, w: int, H: int, W: int, cell_clip=AUTO) -> float:
        clip = self.cell_clip if cell_clip == AUTO else cell_clip
        return cell_factor(nominal_scale(h, w, H, W), clip)

    @torch.no_grad()
    def predict_full(
        self,
        lr: torch.Tensor,
        H: int,
        W: int,
        tile_q: int | None = DEFAULT_TILE_QUERIES,
        cell_clip: float | None | str = AUTO,
        **render_options,
    ) -> torch.Tensor:
        """Super-resolve lr (B, 3, h, w) in [0, 1] to (B, 3, H, W) in [0, 1] (unclamped), with
        the official test-time cell rule (``cell_clip``: "auto" = the model's, None = off).
        ``tile_q`` bounds the queries decoded at once (None: all); the result does not depend
        on it. ``render_options`` go to the representation's ``render`` (LM-LIIF / LM-LTE:
        ``cmsr=TABLE`` and ``cmsr_exact_grid``)."""
        return self.encode(lr).render(
            H, W, max_pixels=tile_q or H * W, cell_clip=cell_clip, **render_options
        )
