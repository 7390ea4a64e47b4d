"""SwinIR feature extractor (Liang et al., ICCVW 2021), checkpoint-compatible with the versions in
the LTE repository (jaewon-lee-b/lte @ a8815d6, ``models/swinir.py``) and ContinuousSR.

(B, 3, h, w) in the caller's range (no mean shift: the official encoders comment it out) ->
features. Steps: reflect-pad bottom/right to a multiple of ``window_size``; ``conv_first``
(3x3 to ``embed_dim``); tokens -> LayerNorm (``patch_embed.norm``) -> residual Swin transformer
blocks (RSTBs) -> LayerNorm (``norm``) -> image; ``conv_after_body`` plus the ``conv_first``
skip; ``conv_before_upsample`` (3x3 to ``num_feat``, LeakyReLU 0.01). Then, by ``upsampler``:

* ``"none"`` (LTE's encoder, the default): the output is (B, 64, H_pad, W_pad), the *padded*
  size, not cropped back (as the official code does);
* ``"pixelshuffle"`` (ContinuousSR's feature upsampler): [3x3 conv to 4 x num_feat, pixel
  shuffle 2] per factor 2 (or one x3 step), then a crop to (upscale h, upscale w); ``conv_last``
  exists (state-dict compatibility) but is skipped. Output (B, 64, upscale h, upscale w).

An RSTB is ``depth`` Swin blocks (pre-norm window attention with a learned relative-position
bias, odd blocks on a cyclically shifted image; pre-norm MLP), a 3x3 conv (or the '3conv'
bottleneck), plus the RSTB input. Defaults are LTE's: embed 180, 6 RSTBs of 6 blocks, 6 heads,
window 8, MLP ratio 2: 11,603,044 parameters.

The relative-position index and shift masks are computed for the actual input size on every
call (see :mod:`._window`); they are not in our state dict. Official state dicts carry them as
buffers (``attn.relative_position_index``, ``attn_mask``): :func:`strip_official_buffers`
checks and removes them before a strict load.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..errors import CheckpointError
from ..registry import register
from ._window import (
    DropPath,
    Mlp,
    attend,
    pad_to_multiple,
    relative_position_index,
    shift_mask,
    window_partition,
    window_reverse,
    windows_per_chunk,
)

__all__ = [
    "SwinIRConfig",
    "SwinIREncoder",
    "strip_official_buffers",
    "pixelshuffle_upsampler",
    "swinir_config_from_official",
    "swinir_from_official",
    "swinir_official_block",
]


@dataclass
class SwinIRConfig:
    """SwinIR sizes; the defaults are LTE's encoder (``upsampler="none"``).

    ContinuousSR's paper encoder: ``upsampler="pixelshuffle", upscale=4`` (same body).
    """

    embed_dim: int = 180
    depths: list[int] = field(default_factory=lambda: [6] * 6)
    num_heads: list[int] = field(default_factory=lambda: [6] * 6)
    window_size: int = 8
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_path_rate: float = 0.1
    patch_norm: bool = True
    resi_connection: str = "1conv"
    in_channels: int = 3
    num_feat: int = 64
    upsampler: str = "none"
    upscale: int = 4

    def __post_init__(self):
        self.depths = [int(d) for d in self.depths]
        self.num_heads = [int(h) for h in self.num_heads]
        if len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"depths {self.depths} and num_heads {self.num_heads} differ in length"
            )
        if any(self.embed_dim % h for h in self.num_heads):
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads")
        if self.upsampler not in ("none", "pixelshuffle"):
            raise ValueError(f"upsampler must be 'none' or 'pixelshuffle', not {self.upsampler!r}")
        if self.resi_connection not in ("1conv", "3conv"):
            raise ValueError("resi_connection must be '1conv' or '3conv'")
        if self.window_size < 2:
            raise ValueError(f"window_size must be >= 2 (got {self.window_size})")


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a relative-position bias table
    ((2 ws - 1)^2, heads). Keys: ``relative_position_bias_table``, ``qkv``, ``proj``."""

    def __init__(self, dim: int, ws: int, heads: int, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.dim, self.ws, self.heads = dim, ws, heads
        self.scale = qk_scale or (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def bias(self) -> torch.Tensor:
        """(heads, ws^2, ws^2) bias of every (query, key) pair in a window."""
        n = self.ws * self.ws
        idx = relative_position_index(self.ws).to(self.relative_position_bias_table.device)
        return self.relative_position_bias_table[idx.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """windows (B, nW, N, C), mask (nW, N, N) or None -> (B, nW, N, C)."""
        b, nw, n, c = windows.shape
        h, d = self.heads, c // self.heads
        bias = self.bias().unsqueeze(0)  # (1, heads, N, N)
        step = windows_per_chunk(b, n, n, c, h, windows.element_size())
        outs = []
        for s in range(0, nw, step):
            chunk = windows[:, s : s + step]
            m = chunk.shape[1]
            qkv = self.qkv(chunk).view(b * m, n, 3, h, d).permute(2, 0, 3, 1, 4)
            full = bias
            if mask is not None:  # (m, heads, N, N), the same for every image of the batch
                full = bias + mask[s : s + m].unsqueeze(1)
                full = full.unsqueeze(0).expand(b, -1, -1, -1, -1).reshape(-1, h, n, n)
            out = attend(qkv[0], qkv[1], qkv[2], full, self.scale)
            outs.append(self.proj(out.transpose(1, 2).reshape(b, m, n, c)))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class SwinBlock(nn.Module):
    """norm1 -> (roll by -shift) -> window attention -> (roll back) -> + input;
    norm2 -> MLP -> + input. Keys: ``norm1``, ``attn.*``, ``norm2``, ``mlp.fc1/fc2``."""

    def __init__(self, dim, heads, ws, shift, mlp_ratio, qkv_bias, qk_scale, drop_path):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, heads, qkv_bias, qk_scale)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x (B, H*W, C) tokens of an (H, W) image (multiples of ws) -> same shape."""
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        mask = None
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shift_mask(h, w, self.ws, self.shift, device=x.device, dtype=x.dtype)
        win = window_partition(y, self.ws)
        win = self.attn(win.view(b, -1, self.ws * self.ws, c), mask)
        y = window_reverse(win.reshape(-1, self.ws * self.ws, c), self.ws, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _BlockList(nn.Module):
    """Holder for the ``blocks`` list (official key path ``residual_group.blocks``)."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


def residual_conv(dim: int, kind: str) -> nn.Module:
    """The conv closing a residual group: 3x3 ('1conv') or the '3conv' bottleneck."""
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    q = dim // 4
    return nn.Sequential(
        nn.Conv2d(dim, q, 3, 1, 1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(q, q, 1, 1, 0),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(q, dim, 3, 1, 1),
    )


def tokens(img: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return img.flatten(2).transpose(1, 2)


def image(tok: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return tok.transpose(1, 2).reshape(tok.shape[0], -1, size[0], size[1])


class RSTB(nn.Module):
    """Residual Swin transformer block: Swin blocks, conv, plus the input."""

    def __init__(self, cfg: SwinIRConfig, depth: int, heads: int, drop_paths: list[float]):
        super().__init__()
        ws = cfg.window_size
        self.residual_group = _BlockList(
            [
                SwinBlock(
                    cfg.embed_dim,
                    heads,
                    ws,
                    0 if i % 2 == 0 else ws // 2,
                    cfg.mlp_ratio,
                    cfg.qkv_bias,
                    cfg.qk_scale,
                    drop_paths[i],
                )
                for i in range(depth)
            ]
        )
        self.conv = residual_conv(cfg.embed_dim, cfg.resi_connection)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = x
        for blk in self.residual_group.blocks:
            y = blk(y, size)
        return tokens(self.conv(image(y, size))) + x


class _TokenNorm(nn.Module):
    """Holder for ``patch_embed.norm`` (the LayerNorm applied right after tokenising)."""

    def __init__(self, dim: int, enabled: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if enabled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.norm is None else self.norm(x)


def pixelshuffle_upsampler(scale: int, num_feat: int) -> nn.Sequential:
    """[conv 3x3 to 4 num_feat, PixelShuffle(2)] per factor 2, or one x3 step (keys
    ``upsample.{0, 2, ...}``)."""
    layers: list[nn.Module] = []
    if scale >= 1 and scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"upscale {scale} is not supported (powers of 2 and 3)")
    return nn.Sequential(*layers)


def _drop_paths(rate: float, depths: list[int]) -> list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over all blocks."""
    total = sum(depths)
    rates = [rate * i / (total - 1) for i in range(total)] if total > 1 else [0.0] * total
    out, i = [], 0
    for d in depths:
        out.append(rates[i : i + d])
        i += d
    return out


@register("encoder", "swinir")
class SwinIREncoder(nn.Module):
    """SwinIR body + ``conv_before_upsample`` (+ optional feature upsampler); ``out_dim`` is
    ``num_feat``; ``scale`` is the output/input size ratio (1, or ``upscale``)."""

    out_dim: int

    def __init__(self, cfg: SwinIRConfig | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else SwinIRConfig()
        self.cfg = cfg
        self.out_dim = cfg.num_feat
        self.scale = cfg.upscale if cfg.upsampler == "pixelshuffle" else 1
        self.window_size = cfg.window_size
        dim = cfg.embed_dim
        self.conv_first = nn.Conv2d(cfg.in_channels, dim, 3, 1, 1)
        self.patch_embed = _TokenNorm(dim, cfg.patch_norm)
        drops = _drop_paths(cfg.drop_path_rate, cfg.depths)
        self.layers = nn.ModuleList(
            RSTB(cfg, d, h, dp) for d, h, dp in zip(cfg.depths, cfg.num_heads, drops)
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = residual_conv(dim, cfg.resi_connection)
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(dim, cfg.num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
        )
        if cfg.upsampler == "pixelshuffle":
            self.upsample = pixelshuffle_upsampler(cfg.upscale, cfg.num_feat)
            # Present in the official state dict; ContinuousSR skips it.
            self.conv_last = nn.Conv2d(cfg.num_feat, cfg.in_channels, 3, 1, 1)
        self.apply(_init_weights)

    def get_config(self) -> dict:
        return dataclasses.asdict(self.cfg)

    @classmethod
    def from_config(cls, config: dict) -> SwinIREncoder:
        return cls(SwinIRConfig(**config))

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's own first step: reflect-pad to a multiple of the window. Tiled encoding
        (:mod:`.tiling`) applies it to the whole image first so that tiles see the same pixels
        as the untiled encoder (used only when ``crops_to_input`` is False)."""
        return pad_to_multiple(x, self.window_size)

    @property
    def crops_to_input(self) -> bool:
        """True when the output covers exactly ``scale`` x the unpadded input."""
        return self.cfg.upsampler == "pixelshuffle"

    def bytes_per_input_pixel(self, itemsize: int = 4) -> int:
        """Rough peak working memory of inference per (padded) input pixel, in bytes: about
        (8 + 2 mlp_ratio) token maps of ``embed_dim`` channels alive inside a block, plus the
        feature upsampler's maps (excluding the bounded attention chunks)."""
        c = self.cfg.embed_dim
        per = (8 + 2 * self.cfg.mlp_ratio) * c + 2 * self.cfg.num_feat
        if self.cfg.upsampler == "pixelshuffle":
            per += 3 * self.cfg.num_feat * self.scale**2
        return int(per * itemsize)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, embed, H, W) with H, W multiples of the window -> (B, embed, H, W)."""
        size = (x.shape[-2], x.shape[-1])
        t = self.patch_embed(tokens(x))
        for layer in self.layers:
            t = layer(t, size)
        return image(self.norm(t), size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.conv_first(pad_to_multiple(x, self.window_size))
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.conv_before_upsample(x)
        if self.cfg.upsampler == "pixelshuffle":
            x = self.upsample(x)[..., : self.scale * h, : self.scale * w]
        return x


def _init_weights(m: nn.Module) -> None:
    # The official initialisation: truncated-normal Linear weights, zero biases, unit LayerNorm.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# Buffers the official modules keep in their state dicts and we recompute per input size.
_OFFICIAL_BUFFER_SUFFIXES = ("attn.relative_position_index", "attn_mask")


def strip_official_buffers(sd: dict[str, torch.Tensor], window_size: int) -> dict:
    """An official SwinIR state dict (keys relative to the encoder) without its index and mask
    buffers. Each ``relative_position_index`` is checked against ours (a file whose index does
    not match was made by different code, and its bias tables would be read wrongly)."""
    ours = relative_position_index(window_size)
    out = {}
    for k, v in sd.items():
        if k.endswith(".attn.relative_position_index"):
            if tuple(v.shape) != tuple(ours.shape) or not torch.equal(v.long().cpu(), ours):
                raise CheckpointError(
                    f"{k} does not match a window of {window_size} (shape {tuple(v.shape)})"
                )
            continue
        if k.endswith(".attn_mask"):
            continue
        out[k] = v
    return out


def swinir_config_from_official(sd: dict[str, torch.Tensor], img_size: int = 48) -> dict:
    """Our SwinIR config from an official state dict (keys relative to the encoder).

    Read from tensor shapes, not from stored args: both official ``swinir`` factories (LTE's
    and ContinuousSR's) ignore their arguments, so the weights are the only reliable record.
    ``qk_scale`` cannot be read and is taken as the default (head_dim^-0.5), as both factories
    build it. ``img_size`` is the official model's (48 in LTE, 64 in ContinuousSR; read from
    the stored ``attn_mask`` when present): blocks of a model built for an image not larger
    than the window behave differently and are refused."""
    if "conv_first.weight" not in sd:
        raise CheckpointError("not a SwinIR state dict: conv_first.weight is missing")
    dim, in_ch = (int(s) for s in sd["conv_first.weight"].shape[:2])
    depths, heads = [], []
    while f"layers.{len(depths)}.residual_group.blocks.0.norm1.weight" in sd:
        i, n = len(depths), 0
        while f"layers.{i}.residual_group.blocks.{n}.norm1.weight" in sd:
            n += 1
        table = sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"]
        depths.append(n)
        heads.append(int(table.shape[1]))
    if not depths:
        raise CheckpointError("not a SwinIR state dict: no layers.*.residual_group.blocks")
    b0 = "layers.0.residual_group.blocks.0."
    side = int(round(math.sqrt(sd[b0 + "attn.relative_position_bias_table"].shape[0])))
    ws = (side + 1) // 2
    n_up = sum(1 for k in sd if k.startswith("upsample.") and k.endswith(".weight"))
    up0 = sd.get("upsample.0.weight")
    upscale = 3 if up0 is not None and up0.shape[0] == 9 * up0.shape[1] else 2**n_up
    for k, v in sd.items():
        if k.endswith("attn_mask"):  # (nW, ws^2, ws^2) for an img_size^2 image
            img_size = int(round(math.sqrt(v.shape[0]))) * ws
            break
    if img_size <= ws:
        raise CheckpointError(f"SwinIR built for img_size {img_size} <= window {ws}: unsupported")
    if "conv_after_body.weight" in sd:
        resi = "1conv"
    elif "conv_after_body.0.weight" in sd:
        resi = "3conv"
    else:
        raise CheckpointError("SwinIR state dict without conv_after_body")
    if "conv_before_upsample.0.weight" not in sd or "absolute_pos_embed" in sd:
        raise CheckpointError("only SwinIR with conv_before_upsample and no ape is supported")
    return {
        "embed_dim": dim,
        "in_channels": in_ch,
        "depths": depths,
        "num_heads": heads,
        "window_size": ws,
        "mlp_ratio": sd[b0 + "mlp.fc1.weight"].shape[0] / dim,
        "qkv_bias": (b0 + "attn.qkv.bias") in sd,
        "patch_norm": "patch_embed.norm.weight" in sd,
        "resi_connection": resi,
        "num_feat": int(sd["conv_before_upsample.0.weight"].shape[0]),
        "upsampler": "pixelshuffle" if n_up else "none",
        "upscale": upscale if n_up else 4,
    }


def swinir_from_official(sd: dict[str, torch.Tensor], prefix: str = "") -> SwinIREncoder:
    """Our SwinIR built from an official state dict (keys under ``prefix``, e.g.
    ``"encoder."``) and loaded strictly (the official index and mask buffers are checked and
    dropped). Raises :class:`CheckpointError` on any mismatch."""
    enc_sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    cfg = SwinIRConfig(**swinir_config_from_official(enc_sd))
    model = SwinIREncoder(cfg)
    enc_sd = strip_official_buffers(enc_sd, cfg.window_size)
    missing, unexpected = model.load_state_dict(enc_sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"SwinIR weights do not fit: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    return model


def swinir_official_block(sd: dict[str, torch.Tensor], prefix: str = "encoder.") -> tuple:
    """A whole official model state dict whose encoder is SwinIR -> (our encoder config, the
    state dict without the encoder's index/mask buffers), for the checkpoint converter."""
    enc = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    cfg = swinir_config_from_official(enc)
    kept = strip_official_buffers(enc, cfg["window_size"])
    out = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    out.update({prefix + k: v for k, v in kept.items()})
    return cfg, out
