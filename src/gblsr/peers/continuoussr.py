"""ContinuousSR ("Pixel to Gaussian", Peng et al., arXiv 2503.06617): an image as a field of 2-D
Gaussians built once from the LR image and rasterised at any size. Checkpoint-compatible with the
official code (peylnog/ContinuousSR; released weights: HAT encoder, CC BY-NC 4.0).

Field of an LR image (B, 3, h, w) in [0, 1] (no normalisation):
  * encoder -> (B, 64, 4h, 4w) (HAT / SwinIR / ``upsampled4``: a x4 feature upsampler, no
    ``conv_last``); ``PixelUnshuffle(2)`` -> F (B, 256, 2h, 2w), channel ``c * 4 + 2a + b``;
  * Gaussian n = i * 2w + j (row-major over the 2h x 2w grid), one per F position:
    colour ``mlp(F)`` (unbounded RGB, GELU MLP 256-512-1024-256-128-64-3);
    Cholesky ``softmax_k(<conv1(LReLU(F)), mlp_vector(D_k)>) @ D`` with D the 730 x 3
    "Deep Gaussian Prior" dictionary (:func:`gaussian_dictionary`), no 1/sqrt(d);
    offset ``tanh(mlp_offset(X))`` with X = LReLU(F) (official HEAD, ``offset_input="lrelu"``) or
    X = F (the commit the weights were released with, 482ec14, ``offset_input="raw"``);
  * base means (NDC): ``x = 2 (j / 2w) - 1 + 2 o_x / w``, ``y = 2 (i / 2h) - 1 + 2 o_y / h``.
Rendering at H x W (scales s_h = H / h, s_w = W / w unless given): means minus (1/W, 1/H),
Cholesky ``L / 4 * (s_w, s_h, s_h)`` (``l21_scale="width"``: ``(s_w, s_w, s_h)``, the release
commit), opacity 1, then :mod:`gblsr.peers.gaussian_raster` (``tile_cap`` None = every Gaussian,
256 = the official kernel's silent per-tile cap).

Unlike the official code, the heads run once per image (``encode``), not once per scale; the
offset head is batch-correct (HEAD mixes channels across a batch > 1); everything runs on CPU
or GPU in bounded memory (heads in bands of grid rows, rendering in tiles).
State-dict keys equal the official ones (``conv1``, ``mlp_vector.layers.*``, ``mlp.layers.*``,
``mlp_offset.layers.*``, ``encoder.*``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserInputError
from ..registry import make, register
from ..representation import Representation, SRModel, check_window
from ._common import MLP
from .gaussian_raster import render_gaussians

__all__ = [
    "ContinuousSR",
    "GaussianField",
    "gaussian_dictionary",
    "field_means",
    "scaled_cholesky",
    "WEIGHTS_LICENCE",
]

# The dictionary's Cholesky values (l11, l21, l22), as published; the row order is
# itertools.product's (l11 slowest), then one all-zero row.
CHOLESKY_VALUES = (
    (0.0, 0.41, 0.62, 0.98, 1.13, 1.29, 1.64, 1.85, 2.36),
    (-0.86, -0.36, -0.16, 0.19, 0.34, 0.49, 0.84, 1.04, 1.54),
    (0.0, 0.33, 0.53, 0.88, 1.03, 1.18, 1.53, 1.73, 2.23),
)
WEIGHTS_LICENCE = "CC BY-NC 4.0"
OFFSET_INPUTS = ("lrelu", "raw")
# Grid positions per head chunk (bounds the 730-way attention and 1024-wide MLP activations).
_HEAD_CHUNK = 1 << 15
# Query points per chunk of Representation.query.
_QUERY_CHUNK = 4096
# Half-width (grid cells) of the neighbourhood that can reach a query point: drift < 1 LR px
# (2 cells) + the alpha >= 1/255 reach sqrt(2 ln 255) * 0.677 LR px of the dictionary's widest
# Gaussian (4.5 cells) -> 6.5, rounded up with a margin.
_QUERY_REACH = 8


def gaussian_dictionary(
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """The 730 x 3 dictionary D: the 9^3 product of :data:`CHOLESKY_VALUES` rows (float32
    values, l11 varying slowest) and a zero row, cast to ``dtype``."""
    rows = list(itertools.product(*CHOLESKY_VALUES)) + [(0.0, 0.0, 0.0)]
    return torch.tensor(rows, dtype=torch.float32).to(device=device, dtype=dtype)


def field_means(offset: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Scale-independent NDC means: offset (B, 4hw, 2) (x, y) in (-1, 1) -> (B, 4hw, 2) (x, y),
    ``2 (j / 2w) - 1 + 2 o_x / w`` (the official float32 operation order)."""
    dev = offset.device
    gx = 2 * (torch.arange(2 * w, device=dev) / (2 * w)) - 1
    gy = 2 * (torch.arange(2 * h, device=dev) / (2 * h)) - 1
    gx = gx.to(offset.dtype).repeat(2 * h)
    gy = gy.to(offset.dtype).repeat_interleave(2 * w)
    x = gx + 2 * offset[..., 0] / w
    y = gy + 2 * offset[..., 1] / h
    return torch.stack([x, y], dim=-1)


def scaled_cholesky(
    chol: torch.Tensor, scale_h: float, scale_w: float, l21_scale: str = "height"
) -> torch.Tensor:
    """(B, N, 3) dictionary-space Cholesky -> pixels of a render at (scale_h, scale_w):
    ``L / 4 * (s_w, s_h, s_h)`` (``l21_scale="width"``: ``(s_w, s_w, s_h)``)."""
    q = chol / 4
    s21 = scale_h if l21_scale == "height" else scale_w
    return torch.stack([q[..., 0] * scale_w, q[..., 1] * s21, q[..., 2] * scale_h], dim=-1)


class GaussianField(Representation):
    """An encoded ContinuousSR image: colours (B, N, 3), Cholesky (B, N, 3) before scaling,
    scale-independent means (B, N, 2) (x, y) NDC, N = 4hw. Rendering only rasterises.

    Render options: ``tile_cap`` (None = every Gaussian; 256 = official; default the model's),
    ``scale`` = (s_h, s_w) to override H / h, W / w (the official code scales by the requested
    factor even when round(h s) / h differs from it)."""

    def __init__(
        self,
        colour: torch.Tensor,
        chol: torch.Tensor,
        means: torch.Tensor,
        input_size: tuple[int, int],
        tile_cap: int | None = None,
        l21_scale: str = "height",
    ):
        self.colour, self.chol, self.means = colour, chol, means
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.batch_size = colour.shape[0]
        self.device, self.dtype = colour.device, colour.dtype
        self.tile_cap = tile_cap
        self.l21_scale = l21_scale

    def __repr__(self) -> str:
        h, w = self.input_size
        return f"GaussianField(batch={self.batch_size}, input={h}x{w}, gaussians={4 * h * w})"

    def _pixel_params(self, H: int, W: int, scale: Any) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.input_size
        if scale is None:
            sh, sw = H / h, W / w
        else:
            sh, sw = (float(scale), float(scale)) if isinstance(scale, (int, float)) else scale
        means = self.means - self.means.new_tensor([1 / W, 1 / H])
        return means, scaled_cholesky(self.chol, float(sh), float(sw), self.l21_scale)

    def render_region(
        self,
        top: int,
        left: int,
        height: int,
        width: int,
        H: int,
        W: int,
        *,
        tile_cap: Any = "model",
        scale: Any = None,
        **options: Any,
    ) -> torch.Tensor:
        if options:
            raise TypeError(f"unknown render options for ContinuousSR: {', '.join(options)}")
        check_window(top, left, height, width, H, W)
        cap = self.tile_cap if tile_cap == "model" else tile_cap
        means, chol = self._pixel_params(H, W, scale)
        return render_gaussians(
            means, chol, self.colour, H, W, tile_cap=cap, region=(top, left, height, width)
        )

    def bytes_per_pixel(self, H: int, W: int) -> int:
        # The rasteriser's working memory is bounded on its own; per pixel there is the output
        # and the block's padded tile table.
        return self.batch_size * (3 * 4 * 2 + 64)

    def query(self, coord: torch.Tensor, cell: torch.Tensor | None = None) -> torch.Tensor:
        """The continuous field at coord (B, Q, 2) (y, x) in [-1, 1]: sum over Gaussians of
        colour * exp(-sigma) with the alpha >= 1/255 rule, in LR pixel units (scale-independent).
        The raster grid's tile boxes and cap do not apply to points; ``cell`` is ignored
        (point sampling, as the renderer)."""
        h, w = self.input_size
        B, Q, _ = coord.shape
        R = _QUERY_REACH
        # LR-pixel coordinates of the points and of the means.
        uy = (coord[..., 0].to(self.dtype) + 1) * (h / 2)
        ux = (coord[..., 1].to(self.dtype) + 1) * (w / 2)
        mx = (self.means[..., 0] + 1) * (w / 2)
        my = (self.means[..., 1] + 1) * (h / 2)
        q = self.chol / 4
        a = q[..., 0] * q[..., 0]
        b = q[..., 0] * q[..., 1]
        c = q[..., 1] * q[..., 1] + q[..., 2] * q[..., 2]
        det = a * c - b * b
        ok = det != 0
        inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
        ca, cb, cc = c * inv, -b * inv, a * inv
        d = torch.arange(-R, R + 1, device=coord.device)
        out = []
        bidx = torch.arange(B, device=coord.device)[:, None, None]
        for s in range(0, Q, _QUERY_CHUNK):
            py, px = uy[:, s : s + _QUERY_CHUNK], ux[:, s : s + _QUERY_CHUNK]
            gi = (torch.floor(py * 2).long()[..., None, None] + d[:, None]).clamp(-1, 2 * h)
            gj = (torch.floor(px * 2).long()[..., None, None] + d[None, :]).clamp(-1, 2 * w)
            inside = (gi >= 0) & (gi < 2 * h) & (gj >= 0) & (gj < 2 * w)
            # Clamping repeats border cells; mask the repeats so each Gaussian counts once.
            n = (gi.clamp(0, 2 * h - 1) * (2 * w) + gj.clamp(0, 2 * w - 1)).flatten(2)
            inside = inside.flatten(2) & ok[bidx, n]
            dx = mx[bidx, n] - px[..., None]
            dy = my[bidx, n] - py[..., None]
            sigma = 0.5 * (ca[bidx, n] * dx * dx + cc[bidx, n] * dy * dy) + cb[bidx, n] * dx * dy
            alpha = torch.clamp_max(torch.exp(-sigma), 1.0)
            alpha = torch.where(inside & (sigma >= 0) & (alpha >= 1.0 / 255.0), alpha, 0.0)
            out.append(torch.einsum("bqk,bqkc->bqc", alpha, self.colour[bidx, n]))
        return torch.cat(out, dim=1)


@register("model", "continuoussr")
class ContinuousSR(nn.Module, SRModel):
    """Encoder (64 channels at x4) + ContinuousSR's Gaussian heads (4,021,957 parameters).

    ``offset_input``: "lrelu" (official HEAD; the default for files of unknown origin) or "raw"
    (the checkpoint-release commit). ``l21_scale``: "height" (HEAD) or "width" (release commit;
    differs only for anisotropic scales). ``tile_cap``: default render cap (None = correct,
    256 = official). ``weights_licence``: recorded for converted official weights.
    ``head_width``: multiplies every hidden width of the heads (attention 512, MLPs up to 1024);
    1.0 is the official architecture (and the only one official weights load into). The heads
    cost ~3.5 M multiply-adds per Gaussian, one Gaussian per x4 output pixel, so a CPU study
    narrows them the way it narrows LIIF's MLP.
    """

    def __init__(
        self,
        encoder: str = "upsampled4",
        encoder_cfg: dict | None = None,
        offset_input: str = "lrelu",
        l21_scale: str = "height",
        tile_cap: int | None = None,
        weights_licence: str | None = None,
        head_width: float = 1.0,
    ):
        super().__init__()
        if offset_input not in OFFSET_INPUTS:
            raise ValueError(f"offset_input must be one of {OFFSET_INPUTS}, got {offset_input!r}")
        if l21_scale not in ("height", "width"):
            raise ValueError(f"l21_scale must be 'height' or 'width', got {l21_scale!r}")
        if tile_cap is not None and int(tile_cap) < 1:
            raise ValueError(f"tile_cap must be None or >= 1, got {tile_cap}")
        self.encoder_name = encoder
        self.encoder = make("encoder", encoder, **(encoder_cfg or {}))
        self.offset_input = offset_input
        self.l21_scale = l21_scale
        self.tile_cap = None if tile_cap is None else int(tile_cap)
        self.weights_licence = weights_licence
        if not (isinstance(head_width, (int, float)) and 0 < head_width <= 4):
            raise ValueError(f"head_width must be a number in (0, 4], got {head_width!r}")
        self.head_width = float(head_width)

        def w(n: int) -> int:
            return max(1, round(n * self.head_width))

        self.conv1 = nn.Conv2d(256, w(512), kernel_size=3, padding=1)
        self.mlp_vector = MLP(3, w(512), [w(256), w(512), w(512), w(512)], act="gelu")
        hidden = [w(512), w(1024), w(256), w(128), w(64)]
        self.mlp = MLP(256, 3, hidden, act="gelu")
        self.mlp_offset = MLP(256, 2, hidden, act="gelu")
        # The official MLPs start from xavier-uniform weights and zero biases.
        for mlp in (self.mlp_vector, self.mlp, self.mlp_offset):
            for layer in mlp.layers:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def get_config(self) -> dict:
        return {
            "encoder": self.encoder_name,
            "encoder_cfg": self.encoder.get_config(),
            "offset_input": self.offset_input,
            "l21_scale": self.l21_scale,
            "tile_cap": self.tile_cap,
            "weights_licence": self.weights_licence,
            "head_width": self.head_width,
        }

    @classmethod
    def from_config(cls, config: dict) -> ContinuousSR:
        return cls(**config)

    # -- the field -------------------------------------------------------------------------------
    def features(self, lr: torch.Tensor) -> torch.Tensor:
        """lr (B, 3, h, w) -> F (B, 256, 2h, 2w) (encoder, then PixelUnshuffle(2))."""
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise UserInputError(f"expected an image batch (B, 3, h, w), got {tuple(lr.shape)}")
        h, w = lr.shape[-2:]
        feat = self.encoder(lr)
        if tuple(feat.shape[1:]) != (64, 4 * h, 4 * w):
            raise UserInputError(
                f"encoder {self.encoder_name!r} gives {tuple(feat.shape[1:])} features; "
                f"ContinuousSR needs (64, {4 * h}, {4 * w}) (64 channels at x4)"
            )
        return F.pixel_unshuffle(feat, 2)

    def heads(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """F (B, 256, 2h, 2w) -> colour (B, N, 3), Cholesky (B, N, 3), offset (B, N, 2) (tanh'd),
        N = 4hw row-major. Computed in bands of grid rows (conv1 gets a one-row halo)."""
        B, _, gh, gw = feat.shape
        dic = gaussian_dictionary(feat.dtype, feat.device)
        keys = self.mlp_vector(dic)  # (730, D), D = 512 at head_width 1
        act = F.leaky_relu(feat, 0.01)
        rows = max(1, min(gh, _HEAD_CHUNK // max(1, gw * B)))
        cols, chols, offs = [], [], []
        for r0 in range(0, gh, rows):
            r1 = min(gh, r0 + rows)
            lo, hi = max(0, r0 - 1), min(gh, r1 + 1)
            # One halo row each side; zero rows where the band meets the border (conv1's padding).
            band = F.pad(act[:, :, lo:hi], (0, 0, int(r0 == 0), int(r1 == gh)))
            q = F.conv2d(band, self.conv1.weight, self.conv1.bias, padding=(0, 1))
            q = q.flatten(2).transpose(1, 2)  # (B, n, D)
            weights = torch.softmax(q @ keys.t(), dim=-1)
            chols.append(weights @ dic)
            f = feat[:, :, r0:r1].flatten(2).transpose(1, 2)  # (B, n, 256)
            cols.append(self.mlp(f))
            x = act[:, :, r0:r1].flatten(2).transpose(1, 2) if self.offset_input == "lrelu" else f
            offs.append(torch.tanh(self.mlp_offset(x)))
        return torch.cat(cols, 1), torch.cat(chols, 1), torch.cat(offs, 1)

    # -- SRModel ---------------------------------------------------------------------------------
    def encode_state(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """lr (B, 3, h, w) in [0, 1] -> {"colour": (B, N, 3), "chol": (B, N, 3),
        "means": (B, N, 2)}: the whole field, built once."""
        h, w = lr.shape[-2:]
        colour, chol, offset = self.heads(self.features(lr))
        return {"colour": colour, "chol": chol, "means": field_means(offset, h, w)}

    def representation(
        self, state: dict[str, torch.Tensor], input_size: tuple[int, int] | None = None
    ) -> GaussianField:
        if input_size is None:
            n = state["means"].shape[1]
            side = math.isqrt(n // 4)
            if 4 * side * side != n:
                raise UserInputError("pass input_size: the field is not square")
            input_size = (side, side)
        return GaussianField(
            state["colour"],
            state["chol"],
            state["means"],
            input_size,
            tile_cap=self.tile_cap,
            l21_scale=self.l21_scale,
        )

    def forward(
        self,
        lr: torch.Tensor,
        target: tuple[int, int] | torch.Tensor,
        cell: torch.Tensor | None = None,
        **render_options: Any,
    ) -> torch.Tensor:
        """Training interface, differentiable, predictions unclamped.

        ``forward(lr, (H, W))`` -> the whole (B, 3, H, W) render. ``forward(lr, coord, cell)``
        (the ``kind: sr`` trainer's call; coord (B, Q, 2) pixel-centre (y, x) in [-1, 1], cell
        (B, Q, 2) = (2 / H, 2 / W)) -> (B, Q, 3): each sample's whole H x W image is rendered
        (its size read from its cell; samples of equal size share one render) and the queried
        pixels are picked from it, so all of an HR crop supervises the field when coord lists
        every pixel (``sample_q: null``)."""
        rep = self.encode(lr)
        if cell is None:
            H, W = (int(v) for v in target)
            return rep.render_region(0, 0, H, W, H, W, **render_options)
        coord = target
        sizes = torch.round(2.0 / cell[:, 0, :].double()).long().tolist()  # (B, 2) = (H, W)
        out = coord.new_empty(coord.shape[0], coord.shape[1], 3)
        groups: dict[tuple[int, int], list[int]] = {}
        for b, (H, W) in enumerate(sizes):
            groups.setdefault((H, W), []).append(b)
        for (H, W), idx in groups.items():
            sub = GaussianField(
                rep.colour[idx],
                rep.chol[idx],
                rep.means[idx],
                rep.input_size,
                tile_cap=rep.tile_cap,
                l21_scale=rep.l21_scale,
            )
            img = sub.render_region(0, 0, H, W, H, W, **render_options)  # (b, 3, H, W)
            c = coord[idx]
            row = ((c[..., 0] + 1) * (H / 2)).floor().long().clamp(0, H - 1)
            col = ((c[..., 1] + 1) * (W / 2)).floor().long().clamp(0, W - 1)
            flat = img.flatten(2).gather(2, (row * W + col)[:, None, :].expand(-1, 3, -1))
            out[idx] = flat.transpose(1, 2)
        return out
