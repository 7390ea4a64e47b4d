"""GaussianSR (Hu et al., AAAI 2025), checkpoint-compatible with the official code
(tljxyys/GaussianSR @ ef5a38d, model ``gaussian-splatter``). Spec: gaussian_methods.md, Part A.

Pipeline, for an LR image (B, 3, h, w) in [0, 1] (normalised to [-1, 1] inside):

  * encoder (EDSR-baseline by default) -> feat (B, C, h, w); a 3x3 classifier -> logits over a
    bank of K = 100 Gaussian kernels (sigma_x, sigma_y, opacity, rho; raw parameters);
  * selection: a Gumbel-softmax sample (tau 1; soft in training, straight-through one-hot in
    evaluation, drawn once per encode) or, with ``selection="argmax"``, the one-hot argmax;
  * feat[:, :8] and the selection are bicubic-resized to multiples of 7 and cut into 7 x 7
    patches; each of the 49 intra-patch positions gets the selection-weighted kernel
    parameters averaged over every patch of every image in the batch (official) or of each
    image (``per_image_kernels``);
  * per scale s: each 5 x 5 peak-normalised kernel is padded to an S x S canvas
    (S = round(7 s)), translated (bilinear, align_corners=True), and the patch colours are
    splatted with opacity, summed, clamped to [0, 1], folded and bicubic-resized to H x W;
    feat[:, 8:] is bicubic-upsampled to H x W; concat [splat, bicubic];
  * two 3x3 convs at HR give amplitudes and frequencies; per output pixel, LTE's Fourier
    features (no local ensemble, no skip) feed a GELU MLP.

``encode(lr)`` keeps the encoder output and the selection; ``render_region`` builds only the
part of the HR map under a window (plus the 1-pixel halo of the 3x3 convs and the taps of the
bicubic resizes), so windows equal the same pixels of a whole render and tiles bound memory.
``query`` / ``forward`` are the official point interface (the HR map is rendered at the scale
of the first sample, or per sample with ``per_sample_scale``).

The scale of a render is ``scale=`` when given, else H / h. Official checkpoints load through
:func:`gblsr.peers.convert.convert_official`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserInputError
from ..geometry import axis_centres
from ..registry import make, register, register_variant
from ..representation import Representation, SRModel, check_window
from ._common import MLP, denormalize, ensemble_members, normalize, scale_yx
from .gaussiansr_render import (
    canvas_side,
    kernel_bank,
    kernel_canvases,
    resize_window,
    splat_window,
)
from .lte import fourier_input

__all__ = ["GaussianSR", "GaussianSRRepresentation", "SELECTIONS"]

SELECTIONS = ("gumbel", "argmax")
# Output pixels (per image) decoded at once inside a tile.
_CHUNK = 4096
# Default transient memory per tile (bytes).
DEFAULT_BUDGET = 64 << 20


def gumbel_select(
    logits: torch.Tensor, hard: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``F.gumbel_softmax(logits, tau=1, hard)`` over the last axis with an optional generator:
    the same noise as the global stream when both are seeded alike. (N, K) -> (N, K)."""
    noise = torch.empty_like(logits, memory_format=torch.legacy_contiguous_format)
    gumbels = -noise.exponential_(generator=generator).log()
    y_soft = ((logits + gumbels) / 1.0).softmax(-1)
    if not hard:
        return y_soft
    index = y_soft.max(-1, keepdim=True)[1]
    y_hard = torch.zeros_like(logits).scatter_(-1, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


@register("model", "gaussiansr")
class GaussianSR(SRModel, nn.Module):
    """Encoder + Gaussian bank + splatting + LTE-style GELU decoder. Defaults are the official
    configuration (EDSR-baseline, 1,838,159 parameters).

    selection: "gumbel" (official: random at evaluation; pass a ``torch.Generator`` to
        ``encode`` / ``predict_full`` or set ``model.generator`` for reproducible outputs) or
        "argmax" (deterministic). Training always uses the soft Gumbel sample.
    per_image_kernels: average the kernel parameters per image instead of over the batch.
    per_sample_scale: in ``forward`` / ``query``, render each sample at its own scale (the
        official code renders the whole batch at the first sample's).
    centred_grid: place kernel (r, c) at the centre of its LR cell instead of the official
        off-centre grid.
    """

    def __init__(
        self,
        encoder: str = "edsr",
        encoder_cfg: dict | None = None,
        hidden_dim: int = 256,
        hidden: list[int] | tuple[int, ...] = (256, 256, 256, 256),
        kernel_size: int = 5,
        num_kernels: int = 100,
        patch: int = 7,
        splat_channels: int = 8,
        selection: str = "gumbel",
        per_image_kernels: bool = False,
        per_sample_scale: bool = False,
        centred_grid: bool = False,
    ):
        super().__init__()
        if selection not in SELECTIONS:
            raise UserInputError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        side = math.isqrt(int(num_kernels))
        if side * side != num_kernels:
            raise UserInputError(f"num_kernels must be a square (a sigma grid), got {num_kernels}")
        if hidden_dim % 2:
            raise UserInputError(f"hidden_dim must be even, got {hidden_dim}")
        self.encoder_name = encoder
        self.encoder = make("encoder", encoder, **(encoder_cfg or {}))
        c = int(self.encoder.out_dim)
        if c <= splat_channels:
            raise UserInputError(
                f"encoder {encoder!r} has {c} channels; GaussianSR needs more than "
                f"splat_channels={splat_channels}"
            )
        self.hidden_dim, self.hidden = int(hidden_dim), [int(v) for v in hidden]
        self.kernel_size, self.num_kernels, self.patch = int(kernel_size), int(num_kernels), patch
        self.splat_channels = int(splat_channels)
        self.selection = selection
        self.per_image_kernels = bool(per_image_kernels)
        self.per_sample_scale = bool(per_sample_scale)
        self.centred_grid = bool(centred_grid)
        # Bank initialisation of the official code: a sigma grid on linspace(0.2, 3, side),
        # opacity sigmoid(1), rho 0.
        grid = torch.linspace(0.2, 3.0, side)
        sx, sy = torch.meshgrid(grid, grid, indexing="ij")
        self.sigma_x = nn.Parameter(sx.reshape(-1).clone())
        self.sigma_y = nn.Parameter(sy.reshape(-1).clone())
        self.opacity = nn.Parameter(torch.sigmoid(torch.ones(num_kernels, 1)))
        self.rho = nn.Parameter(torch.zeros(num_kernels, 1))
        self.classifier = nn.Conv2d(c, num_kernels, 3, padding=1)
        self.coef = nn.Conv2d(c, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(c, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        self.dec = MLP(hidden_dim, 3, self.hidden, act="gelu")
        self.generator: torch.Generator | None = None  # default Gumbel stream (not saved)

    def get_config(self) -> dict:
        return {
            "encoder": self.encoder_name,
            "encoder_cfg": self.encoder.get_config(),
            "hidden_dim": self.hidden_dim,
            "hidden": list(self.hidden),
            "kernel_size": self.kernel_size,
            "num_kernels": self.num_kernels,
            "patch": self.patch,
            "splat_channels": self.splat_channels,
            "selection": self.selection,
            "per_image_kernels": self.per_image_kernels,
            "per_sample_scale": self.per_sample_scale,
            "centred_grid": self.centred_grid,
        }

    @classmethod
    def from_config(cls, config: dict) -> GaussianSR:
        return cls(**config)

    def set_selection(self, selection: str | None = None, seed: int | None = None) -> dict:
        """Switch the evaluation-time selection and, for "gumbel", seed a dedicated noise
        stream (on the model's device) so that a whole evaluation is reproducible. Returns what
        is in use, for reports: {"selection": ..., "gumbel_seed": seed or None}."""
        if selection is not None:
            if selection not in SELECTIONS:
                raise UserInputError(f"selection must be one of {SELECTIONS}, got {selection!r}")
            self.selection = selection
        self.generator = None
        if self.selection == "gumbel" and seed is not None:
            device = self.classifier.weight.device
            self.generator = torch.Generator(device=device).manual_seed(int(seed))
        used = seed if self.selection == "gumbel" else None
        return {"selection": self.selection, "gumbel_seed": used}

    # -- encoding ---------------------------------------------------------------------------
    def select(self, logits: torch.Tensor, generator: torch.Generator | None = None):
        """Classifier logits (B, K, h, w) -> selection weights (B, K, h, w)."""
        b, k, h, w = logits.shape
        flat = logits.permute(0, 2, 3, 1).contiguous().view(b * h * w, k)
        gen = generator if generator is not None else self.generator
        if self.training:
            sel = gumbel_select(flat, hard=False, generator=gen)
        elif self.selection == "gumbel":
            sel = gumbel_select(flat, hard=True, generator=gen)
        else:
            soft = flat.softmax(-1)
            hard = torch.zeros_like(flat).scatter_(-1, flat.argmax(-1, keepdim=True), 1.0)
            sel = hard - soft.detach() + soft
        return sel.view(b, h, w, k).permute(0, 3, 1, 2).contiguous()

    def encode_state(
        self, lr: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``feat``: encoder output (B, C, h, w); ``sel``: selection weights (B, K, h, w)."""
        feat = self.encoder(normalize(lr))
        return {"feat": feat, "sel": self.select(self.classifier(feat), generator)}

    def encode(
        self, lr: torch.Tensor, generator: torch.Generator | None = None
    ) -> GaussianSRRepresentation:
        """lr (B, 3, h, w) in [0, 1] -> representation; ``generator`` drives the Gumbel noise."""
        return self.representation(self.encode_state(lr, generator), tuple(lr.shape[-2:]))

    def representation(
        self, state: dict[str, torch.Tensor], input_size: tuple[int, int] | None = None
    ) -> GaussianSRRepresentation:
        return GaussianSRRepresentation(self, state["feat"], state["sel"])

    def forward(
        self,
        lr: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor,
        scale: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Training interface: lr (B, 3, h, w), coord/cell (B, Q, 2) (y, x) -> RGB (B, Q, 3) in
        [0, 1] (unclamped). ``scale`` (B,) or a float; by default from the cells."""
        return self.encode(lr).query(coord, cell, scale=scale)


class GaussianSRRepresentation(Representation):
    """An encoded batch: patch colours, the 49 averaged kernels, the bicubic channels; the
    translated canvases are built once per canvas size and cached."""

    def __init__(self, model: GaussianSR, feat: torch.Tensor, sel: torch.Tensor):
        self.model, self.feat, self.sel = model, feat, sel
        b, _, h, w = feat.shape
        self.batch_size, self.device, self.dtype = int(b), feat.device, feat.dtype
        self.input_size = (int(h), int(w))
        r, d = model.patch, model.splat_channels
        self.nr, self.nc = math.ceil(h / r), math.ceil(w / r)
        size = (self.nr * r, self.nc * r)
        splat, sel_r = feat[:, :d], sel
        if size != (h, w):  # the official "padding": a bicubic stretch to multiples of 7
            splat = F.interpolate(splat, size=size, mode="bicubic", align_corners=False)
            sel_r = F.interpolate(sel, size=size, mode="bicubic", align_corners=False)
        self.colour = splat.reshape(b, d, self.nr, r, self.nc, r)
        bank = torch.stack(
            [model.sigma_x, model.sigma_y, model.opacity[:, 0], model.rho[:, 0]], dim=-1
        )  # (K, 4)
        per_pos = torch.einsum("bkyx,kq->byxq", sel_r, bank)
        per_pos = per_pos.reshape(b, self.nr, r, self.nc, r, 4).permute(0, 1, 3, 2, 4, 5)
        groups = b if model.per_image_kernels else 1
        params = per_pos.reshape(groups, -1, r * r, 4).mean(1)  # (G, 49, 4)
        k = model.kernel_size
        self.kernels = kernel_bank(
            params[..., 0].reshape(-1), params[..., 1].reshape(-1), params[..., 3].reshape(-1), k
        ).view(groups, r * r, k, k)
        self.opacity = params[..., 2].reshape(groups, r, r)
        self._canvases: dict[int, torch.Tensor] = {}
        self._maps: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        h, w = self.input_size
        return (
            f"GaussianSRRepresentation(batch={self.batch_size}, input={h}x{w}, "
            f"selection={self.model.selection}, dtype={self.dtype}, device={self.device})"
        )

    # -- geometry ---------------------------------------------------------------------------
    def resolve_scale(self, H: int, scale: float | None) -> float:
        s = float(H) / self.input_size[0] if scale is None else float(scale)
        if not s > 0 or not math.isfinite(s):
            raise UserInputError(f"scale must be a positive number, got {scale}")
        if canvas_side(self.model.patch, s) < self.model.kernel_size:
            raise UserInputError(
                f"GaussianSR needs scale >= {self.model.kernel_size / self.model.patch:.3f} "
                f"(a {self.model.kernel_size}x{self.model.kernel_size} kernel in each "
                f"{self.model.patch}-pixel patch), got {s:g}"
            )
        return s

    def canvases(self, side: int) -> torch.Tensor:
        """(G, R, R, S, S) translated kernel canvases for canvas side S (cached)."""
        if side not in self._canvases:
            r = self.model.patch
            t = kernel_canvases(self.kernels, r, side, self.model.centred_grid)
            self._canvases[side] = t.view(t.shape[0], r, r, side, side)
        return self._canvases[side]

    def hr_map(
        self, rows: tuple[int, int], cols: tuple[int, int], H: int, W: int, scale: float, b=None
    ) -> torch.Tensor:
        """Rows [rows) x cols [cols) of the HR feature map [splat, bicubic] (B, C, n, m);
        ``b``: a slice of the batch."""
        b = slice(None) if b is None else b
        side = canvas_side(self.model.patch, scale)
        t = self.canvases(side)
        op = self.opacity
        if t.shape[0] > 1:
            t, op = t[b], op[b]
        colour, h, w = self.colour[b], *self.input_size

        def splat(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
            i0, j0 = r0 // side, c0 // side
            out = splat_window(colour, op, t, slice(i0, (r1 - 1) // side + 1),
                               slice(j0, (c1 - 1) // side + 1))  # fmt: skip
            return out[..., r0 - i0 * side : r1 - i0 * side, c0 - j0 * side : c1 - j0 * side]

        d = self.model.splat_channels
        rest = self.feat[b, d:]
        args = ((H, W), rows, cols, self.dtype, self.device)
        top = resize_window(splat, (self.nr * side, self.nc * side), *args)
        low = resize_window(lambda r0, r1, c0, c1: rest[..., r0:r1, c0:c1], (h, w), *args)
        return torch.cat([top, low], dim=1)

    def _rel_axis(self, n_out: int, lo: int, hi: int, n_lr: int) -> torch.Tensor:
        """Offsets (hi - lo,) of output pixel centres from their nearest LR centre, times n_lr
        (the official nearest lookup of the LR coordinate grid)."""
        c = axis_centres(n_out, self.dtype, self.device)[lo:hi]
        pts = torch.stack([c, torch.zeros_like(c)], dim=-1).unsqueeze(0)
        member = ensemble_members(pts, n_lr, 1, local_ensemble=False)[0][0]
        return member.rel[0, :, 0]

    def _phase(self, cell_y: float, cell_x: float) -> torch.Tensor:
        cell = torch.ones(1, 1, 2, dtype=self.dtype, device=self.device)
        cell[..., 0] *= cell_y
        cell[..., 1] *= cell_x
        return self.model.phase(scale_yx(cell, *self.input_size))  # (1, 1, K)

    def _decode(self, coef, freq, rel, phase) -> torch.Tensor:
        """(B, Q, 2K) amplitudes/frequencies, rel (B, Q, 2), phase -> RGB (B, Q, 3) in [-1, 1]."""
        b, q, _ = coef.shape
        x = fourier_input(coef, freq, rel, phase)
        return self.model.dec(x.reshape(b * q, -1)).view(b, q, -1)

    # -- the Representation interface -------------------------------------------------------
    def bytes_per_pixel(self, H: int, W: int) -> int:
        # The HR map, the 3x3 convs' input patches (9 C) and their 2K outputs dominate.
        c = int(self.feat.shape[1])
        return self.feat.element_size() * self.batch_size * (11 * c + 2 * self.model.hidden_dim)

    def tile_shape(
        self, H: int, W: int, max_pixels: int | None = None, max_memory: int | None = None
    ) -> tuple[int, int]:
        """As the base class, with a 64 MiB default budget: the HR convs are as fast on bands
        of a few dozen rows, and memory stays a small fraction of the official path's."""
        if max_pixels is None and max_memory is None:
            max_memory = DEFAULT_BUDGET
        return super().tile_shape(H, W, max_pixels, max_memory)

    def render_region(
        self,
        top: int,
        left: int,
        height: int,
        width: int,
        H: int,
        W: int,
        scale: float | None = None,
    ) -> torch.Tensor:
        check_window(top, left, height, width, H, W)
        s = self.resolve_scale(H, scale)
        h, w = self.input_size
        r0, r1 = max(top - 1, 0), min(top + height + 1, H)
        c0, c1 = max(left - 1, 0), min(left + width + 1, W)
        m = self.hr_map((r0, r1), (c0, c1), H, W, s)
        # Zero rows/columns where the window meets the image border: the convs' padding.
        m = F.pad(m, (c0 - left + 1, left + width + 1 - c1, r0 - top + 1, top + height + 1 - r1))
        mdl, k = self.model, self.model.hidden_dim
        # coef and freq read the same map: one conv with both weight sets. Channels-last makes
        # the conv about twice as fast on CPUs and its output (B, Q, 2K) rows contiguous.
        cl = torch.channels_last
        weight = torch.cat([mdl.coef.weight, mdl.freq.weight]).contiguous(memory_format=cl)
        bias = torch.cat([mdl.coef.bias, mdl.freq.bias])
        both = F.conv2d(m.contiguous(memory_format=cl), weight, bias)
        both = both.permute(0, 2, 3, 1).reshape(self.batch_size, -1, 2 * k)
        coef, freq = both[..., :k], both[..., k:]
        rel_y = self._rel_axis(H, top, top + height, h)
        rel_x = self._rel_axis(W, left, left + width, w)
        rel = torch.stack(torch.meshgrid(rel_y, rel_x, indexing="ij"), dim=-1).view(1, -1, 2)
        phase = self._phase(2 / H, 2 / W)
        b, q = self.batch_size, height * width
        out = torch.empty(b, q, 3, dtype=self.dtype, device=self.device)
        for i in range(0, q, _CHUNK):
            j = min(q, i + _CHUNK)
            rel_i = rel[:, i:j].expand(b, -1, -1)
            out[:, i:j] = self._decode(coef[:, i:j], freq[:, i:j], rel_i, phase)
        out = denormalize(out).view(b, height, width, 3)
        return out.permute(0, 3, 1, 2).contiguous()

    def _conv_maps(self, H: int, W: int, s: float, b=None):
        key = (H, W, s, None if b is None else b.start)
        if key not in self._maps:
            m = self.hr_map((0, H), (0, W), H, W, s, b)
            self._maps[key] = (self.model.coef(m), self.model.freq(m))
        return self._maps[key]

    def query(
        self,
        coord: torch.Tensor,
        cell: torch.Tensor | None = None,
        scale: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """coord, cell (B, Q, 2) (y, x) -> (B, Q, 3) in [0, 1]; the official point interface.

        The HR map is rendered at size (round(h s), round(w s)), s = ``scale`` (per sample) or
        the one implied by the cells (2 / cell / h); all samples use the first sample's s unless
        the model has ``per_sample_scale``.
        """
        if cell is None:
            raise UserInputError("GaussianSR queries need cells (the output pixel size)")
        b, q = coord.shape[:2]
        h, w = self.input_size
        if scale is None:
            sizes = torch.round(2 / cell[:, 0].double()).long().tolist()
            scales = [hh / h for hh, _ in sizes]
        else:
            st = torch.as_tensor(scale, dtype=torch.float64).reshape(-1).expand(b)
            scales = [float(v) for v in st]
        per = self.model.per_sample_scale
        groups = [slice(i, i + 1) for i in range(b)] if per else [slice(None)]
        rel = ensemble_members(coord, h, w, local_ensemble=False)[0][0].rel
        rel_cell = scale_yx(cell, h, w)
        phase = self.model.phase(rel_cell.reshape(b * q, 2)).view(b, q, -1)
        outs = []
        for g in groups:
            s = self.resolve_scale(0, scales[g.start or 0])
            H, W = round(h * s), round(w * s)
            coef, freq = self._conv_maps(H, W, s, g if per else None)
            grid = coord[g].flip(-1).unsqueeze(1)
            q_coef = F.grid_sample(coef, grid, mode="nearest", align_corners=False)
            q_freq = F.grid_sample(freq, grid, mode="nearest", align_corners=False)
            q_coef = q_coef[:, :, 0, :].permute(0, 2, 1)
            q_freq = q_freq[:, :, 0, :].permute(0, 2, 1)
            outs.append(self._decode(q_coef, q_freq, rel[g], phase[g]))
        return denormalize(outs[0] if len(outs) == 1 else torch.cat(outs, dim=0))


register_variant("gaussiansr_edsr_baseline", "gaussiansr", encoder="edsr")
