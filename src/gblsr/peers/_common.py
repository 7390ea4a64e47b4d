"""What LIIF, LTE and LMF share: the [-1, 1] data range, the plain MLP, gathering latents,
query grids, and the :class:`PeerRepresentation` / :class:`ImplicitSR` base classes.

The local ensemble (LIIF's corner rule, which decides the last bits of all three methods) is
:func:`gblsr.geometry.ensemble_members` + :func:`gblsr.geometry.blend`, re-exported here.
Without the local ensemble there is one member, no shift and weight 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry import AREA_EPS, CLAMP, CORNER_EPS, Member, blend, ensemble_members, make_coord
from ..registry import make
from ..representation import Representation, SRModel, check_window

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

SHIFT_EPS = CORNER_EPS
# Queries per chunk in predict_full (the official test configs use 30,000).
DEFAULT_TILE_QUERIES = 30000


def normalize(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the [-1, 1] range the official models work in (``(x - 0.5) / 0.5``)."""
    return (img - 0.5) / 0.5


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (``x * 0.5 + 0.5``), not clamped."""
    return x * 0.5 + 0.5


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class MLP(nn.Module):
    """Linear -> act -> ... -> Linear over the last axis; keys ``layers.{0, 2, ...}``.

    act: "relu" (LIIF / LTE / LMF) or "gelu" (GaussianSR, ContinuousSR: the exact-erf GELU).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: list[int], act: str = "relu"):
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), _ACTIVATIONS[act]()]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.layers(x.reshape(-1, x.shape[-1])).view(*lead, -1)


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
    return coord, _cells(coord, H, W, factor)


def _cells(coord: torch.Tensor, H: int, W: int, factor: float) -> torch.Tensor:
    # The official order of operations: ones, times 2/H and 2/W, then the test-time factor.
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / H
    cell[..., 1] *= 2 / W
    return cell * factor if factor != 1 else cell


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
    return coord, _cells(coord, H, W, factor)


class PeerRepresentation(Representation):
    """An encoded image of a peer model: render it at any size, any number of times.

    Built by ``model.encode(lr)``. ``inp`` is the normalised input (B, 3, h, w) in [-1, 1],
    ``feat`` the encoder output. Every output is in [0, 1] (unclamped). The render option
    ``cell_clip`` sets the test-time cell rule: ``"auto"`` (default) is the model's own, None
    turns clipping off, a number clips at that scale.
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
    def input_size(self) -> tuple[int, int]:
        return int(self.inp.shape[-2]), int(self.inp.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.feat.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feat.dtype

    @property
    def batch_size(self) -> int:
        return int(self.inp.shape[0])

    def __repr__(self) -> str:
        h, w = self.size
        return (
            f"PeerRepresentation({self.model.registry_name}, batch={self.batch_size}, "
            f"features={h}x{w}, dtype={self.feat.dtype}, device={self.feat.device})"
        )

    def bytes_per_pixel(self, H: int, W: int) -> int:
        return self.batch_size * self.model.bytes_per_query()

    def query(self, coord: torch.Tensor, cell: torch.Tensor | None = None) -> torch.Tensor:
        """Arbitrary points: coord, cell (B, Q, 2) (y, x) -> (B, Q, 3). The cell (the output
        pixel's size) is part of these methods' input, so it is required."""
        if cell is None:
            raise ValueError(f"{type(self.model).__name__} queries need the cell of each point")
        return denormalize(self.model.decode_queries(self, coord, cell, None))

    def render_region(
        self, top: int, left: int, height: int, width: int, H: int, W: int, cell_clip=AUTO
    ) -> torch.Tensor:
        """Window [top, top + height) x [left, left + width) of the H x W rendering:
        (B, 3, height, width), equal to the same pixels of :meth:`render`."""
        check_window(top, left, height, width, H, W)
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
        pred = self.model.decode_queries(self, coord, cell, None, uniform_cell=True)
        out = denormalize(pred).view(self.batch_size, height, width, -1)
        return out.permute(0, 3, 1, 2).contiguous()


class ImplicitSR(SRModel, nn.Module):
    """Base of the peer models: an encoder, a decoder queried at (y, x) points with cells.

    Subclasses implement :meth:`decode_queries`. Images enter and leave in [0, 1]; the
    official [-1, 1] normalisation happens inside. ``cell_clip`` is the test-time cell rule of
    the method's repository: the cell of a x s render is multiplied by max(s / cell_clip, 1)
    (None: no clipping), with s = sqrt(H W / (h w)). ``encode``, ``predict_full(lr, H, W, *,
    max_memory=None, tile=None, cell_clip="auto", ...)`` come from
    :class:`~gblsr.representation.SRModel`.
    """

    def __init__(self, encoder: str, encoder_cfg: dict | None, cell_clip: float | None):
        super().__init__()
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
