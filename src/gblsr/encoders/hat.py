"""HAT feature extractor (Chen et al., CVPR 2023, "Activating More Pixels in Image
Super-Resolution Transformer"), the BasicSR classic-SR architecture as ContinuousSR uses it
(peylnog/ContinuousSR @ 3879d16, ``models/hat.py``; its released checkpoint's encoder).

(B, 3, h, w) -> (B, 64, upscale h, upscale w) for ``upsampler="pixelshuffle"`` (ContinuousSR:
x4 feature map, ``conv_last`` kept in the state dict but skipped, crop to upscale h x upscale w),
or (B, 64, H_pad, W_pad) for ``upsampler="none"`` (our addition: a LIIF/LTE-style encoder).
No mean shift (commented out officially); reflect padding to the window multiple.

Body: ``conv_first``; tokens -> ``patch_embed.norm`` -> residual hybrid attention groups
(RHAG) -> ``norm`` -> image; ``conv_after_body`` + skip; ``conv_before_upsample``. An RHAG is
``depth`` hybrid attention blocks (HAB), one overlapping cross-attention block (OCAB), a 3x3
conv, plus the group input:

* HAB: x + WindowAttention(norm1 x) [shifted on odd blocks] + conv_scale * CAB(norm1 x), then
  + MLP(norm2 x). CAB = conv 3x3 (dim -> dim / compress_ratio), GELU, conv 3x3 back, channel
  attention (global average pool, 1x1 to dim / squeeze_factor, ReLU, 1x1 back, sigmoid, times).
* OCAB: queries from ws x ws windows, keys/values from the overlapping ws_ext x ws_ext windows
  around them (ws_ext = ws + int(overlap_ratio ws); zero padding at the borders, as the
  official ``nn.Unfold`` does), one bias table of (ws + ws_ext - 1)^2 rows; proj + input,
  then + MLP(norm2).

Relative-position indices (official buffers ``relative_position_index_SA`` (ws^2, ws^2) and
``relative_position_index_OCA`` (ws^2, ws_ext^2)) and the shift masks are recomputed; the
official buffers are checked and dropped by :func:`hat_from_official`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError
from ..registry import register
from ._window import (
    DropPath,
    Mlp,
    attend,
    overlap_relative_position_index,
    pad_to_multiple,
    relative_position_index,
    shift_mask,
    window_partition,
    window_reverse,
    windows_per_chunk,
)
from .swinir import (
    WindowAttention,
    _drop_paths,
    _init_weights,
    _TokenNorm,
    image,
    pixelshuffle_upsampler,
)
from .swinir import tokens as to_tokens

__all__ = ["HATConfig", "HATEncoder", "hat_from_official", "hat_config_from_official"]


@dataclass
class HATConfig:
    """HAT sizes. Defaults: the HAT paper's classic-SR model (embed 180, 6 groups of 6 blocks,
    6 heads, window 16, MLP ratio 2) with ContinuousSR's x4 feature upsampler. A checkpoint's
    stored args (or its tensor shapes) override them: see :func:`hat_config_from_official`."""

    embed_dim: int = 180
    depths: list[int] = field(default_factory=lambda: [6] * 6)
    num_heads: list[int] = field(default_factory=lambda: [6] * 6)
    window_size: int = 16
    compress_ratio: int = 3
    squeeze_factor: int = 30
    conv_scale: float = 0.01
    overlap_ratio: float = 0.5
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_path_rate: float = 0.1
    patch_norm: bool = True
    resi_connection: str = "1conv"
    in_channels: int = 3
    num_feat: int = 64
    upsampler: str = "pixelshuffle"
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
        if self.resi_connection not in ("1conv", "identity"):
            raise ValueError("resi_connection must be '1conv' or 'identity'")
        if self.embed_dim // self.compress_ratio < 1 or self.embed_dim // self.squeeze_factor < 1:
            raise ValueError(
                f"embed_dim {self.embed_dim} is too small for compress_ratio "
                f"{self.compress_ratio} / squeeze_factor {self.squeeze_factor}"
            )
        if (self.overlap_window - self.window_size) % 2:
            # The official unfold then yields fewer key windows than query windows (it fails).
            raise ValueError(
                f"window_size {self.window_size} with overlap_ratio {self.overlap_ratio} gives "
                f"an odd overlap ({self.overlap_window - self.window_size}); it must be even"
            )

    @property
    def overlap_window(self) -> int:
        return self.window_size + int(self.overlap_ratio * self.window_size)


class ChannelAttention(nn.Module):
    """x * sigmoid(conv(relu(conv(mean over H, W)))) (RCAN's squeeze-excitation);
    keys ``attention.1``, ``attention.3``."""

    def __init__(self, dim: int, squeeze: int):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, dim // squeeze, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim // squeeze, dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel attention block; keys ``cab.0``, ``cab.2``, ``cab.3.attention.*``."""

    def __init__(self, dim: int, compress: int, squeeze: int):
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(dim, dim // compress, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(dim // compress, dim, 3, 1, 1),
            ChannelAttention(dim, squeeze),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cab(x)


class HAB(nn.Module):
    """Hybrid attention block (window attention + scaled channel-attention conv branch)."""

    def __init__(self, cfg: HATConfig, heads: int, shift: int, drop_path: float):
        super().__init__()
        dim, ws = cfg.embed_dim, cfg.window_size
        self.ws, self.shift, self.conv_scale = ws, shift, cfg.conv_scale
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, heads, cfg.qkv_bias, cfg.qk_scale)
        self.conv_block = CAB(dim, cfg.compress_ratio, cfg.squeeze_factor)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x (B, H*W, C) -> same; H, W multiples of the window."""
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        conv = self.conv_block(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        mask = None
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shift_mask(h, w, self.ws, self.shift, device=x.device, dtype=x.dtype)
        win = self.attn(window_partition(y, self.ws).view(b, -1, self.ws * self.ws, c), mask)
        y = window_reverse(win.reshape(-1, self.ws * self.ws, c), self.ws, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c)) + conv * self.conv_scale
        return x + self.drop_path(self.mlp(self.norm2(x)))


class OCAB(nn.Module):
    """Overlapping cross-attention block; keys ``norm1``, ``qkv``,
    ``relative_position_bias_table``, ``proj``, ``norm2``, ``mlp.*``."""

    def __init__(self, cfg: HATConfig, heads: int):
        super().__init__()
        dim = cfg.embed_dim
        self.ws, self.ws_ext, self.heads = cfg.window_size, cfg.overlap_window, heads
        self.scale = cfg.qk_scale or (dim // heads) ** -0.5
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=cfg.qkv_bias)
        side = self.ws + self.ws_ext - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(side * side, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def bias(self) -> torch.Tensor:
        """(heads, ws^2, ws_ext^2)."""
        idx = overlap_relative_position_index(self.ws, self.ws_ext)
        idx = idx.to(self.relative_position_bias_table.device)
        nq, nk = idx.shape
        return self.relative_position_bias_table[idx.view(-1)].view(nq, nk, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        ws, we, nh, d = self.ws, self.ws_ext, self.heads, c // self.heads
        qkv = self.qkv(self.norm1(x)).view(b, h, w, 3, c)
        q_win = window_partition(qkv[..., 0, :], ws).view(b, -1, ws * ws, c)
        # Keys/values: every ws_ext x ws_ext patch at stride ws, zero-padded by (we - ws) / 2,
        # laid out like nn.Unfold's output: (B, C * we * we, nW) with C outermost.
        kv = qkv[..., 1:, :].permute(0, 3, 4, 1, 2).reshape(b, 2 * c, h, w)
        pad = (we - ws) // 2
        nw = q_win.shape[1]
        bias = self.bias().unsqueeze(0)
        step = windows_per_chunk(b, ws * ws, we * we, c, nh, x.element_size())
        outs = []
        cols = F.unfold(kv, kernel_size=we, stride=ws, padding=pad).view(b, 2, c, we * we, nw)
        for s in range(0, nw, step):
            m = min(step, nw - s)
            kvw = cols[..., s : s + m].permute(1, 0, 4, 3, 2).reshape(2, b * m, we * we, nh, d)
            k, v = kvw[0].transpose(1, 2), kvw[1].transpose(1, 2)  # (b m, nh, we^2, d)
            qw = q_win[:, s : s + m].reshape(b * m, ws * ws, nh, d).transpose(1, 2)
            out = attend(qw, k, v, bias, self.scale)
            outs.append(out.transpose(1, 2).reshape(b, m, ws * ws, c))
        win = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        y = window_reverse(win.reshape(-1, ws * ws, c), ws, h, w).reshape(b, h * w, c)
        x = self.proj(y) + x
        return x + self.mlp(self.norm2(x))


class _AttenBlocks(nn.Module):
    """Holder for the official key path ``residual_group.{blocks, overlap_attn}``."""

    def __init__(self, blocks: list[nn.Module], overlap_attn: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.overlap_attn = overlap_attn


class RHAG(nn.Module):
    """Residual hybrid attention group: HABs, OCAB, conv, plus the input."""

    def __init__(self, cfg: HATConfig, depth: int, heads: int, drop_paths: list[float]):
        super().__init__()
        ws = cfg.window_size
        blocks = [
            HAB(cfg, heads, 0 if i % 2 == 0 else ws // 2, drop_paths[i]) for i in range(depth)
        ]
        self.residual_group = _AttenBlocks(blocks, OCAB(cfg, heads))
        dim = cfg.embed_dim
        self.conv = (
            nn.Conv2d(dim, dim, 3, 1, 1) if cfg.resi_connection == "1conv" else nn.Identity()
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = x
        for blk in self.residual_group.blocks:
            y = blk(y, size)
        y = self.residual_group.overlap_attn(y, size)
        return to_tokens(self.conv(image(y, size))) + x


@register("encoder", "hat")
class HATEncoder(nn.Module):
    """HAT body + ``conv_before_upsample`` (+ feature upsampler); ``out_dim`` = ``num_feat``."""

    out_dim: int

    def __init__(self, cfg: HATConfig | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else HATConfig()
        self.cfg = cfg
        self.out_dim = cfg.num_feat
        self.scale = cfg.upscale if cfg.upsampler == "pixelshuffle" else 1
        self.window_size = cfg.window_size
        dim = cfg.embed_dim
        self.conv_first = nn.Conv2d(cfg.in_channels, dim, 3, 1, 1)
        self.patch_embed = _TokenNorm(dim, cfg.patch_norm)
        drops = _drop_paths(cfg.drop_path_rate, cfg.depths)
        self.layers = nn.ModuleList(
            RHAG(cfg, d, h, dp) for d, h, dp in zip(cfg.depths, cfg.num_heads, drops)
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = (
            nn.Conv2d(dim, dim, 3, 1, 1) if cfg.resi_connection == "1conv" else nn.Identity()
        )
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(dim, cfg.num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
        )
        if cfg.upsampler == "pixelshuffle":
            self.upsample = pixelshuffle_upsampler(cfg.upscale, cfg.num_feat)
            self.conv_last = nn.Conv2d(cfg.num_feat, cfg.in_channels, 3, 1, 1)  # unused
        self.apply(_init_weights)

    def get_config(self) -> dict:
        return dataclasses.asdict(self.cfg)

    @classmethod
    def from_config(cls, config: dict) -> HATEncoder:
        return cls(HATConfig(**config))

    @property
    def crops_to_input(self) -> bool:
        return self.cfg.upsampler == "pixelshuffle"

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        return pad_to_multiple(x, self.window_size)

    def bytes_per_input_pixel(self, itemsize: int = 4) -> int:
        """Rough peak inference memory per (padded) input pixel, in bytes (token maps, the
        channel-attention branch, the overlapping key/value patches, the x4 upsampler)."""
        cfg = self.cfg
        ratio = (cfg.overlap_window / cfg.window_size) ** 2
        per = (10 + 2 * cfg.mlp_ratio + 2 * ratio) * cfg.embed_dim + 2 * cfg.num_feat
        if cfg.upsampler == "pixelshuffle":
            per += 3 * cfg.num_feat * self.scale**2
        return int(per * itemsize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.conv_first(pad_to_multiple(x, self.window_size))
        size = (x.shape[-2], x.shape[-1])
        t = self.patch_embed(to_tokens(x))
        for layer in self.layers:
            t = layer(t, size)
        x = self.conv_after_body(image(self.norm(t), size)) + x
        x = self.conv_before_upsample(x)
        if self.cfg.upsampler == "pixelshuffle":
            x = self.upsample(x)[..., : self.scale * h, : self.scale * w]
        return x


# --------------------------------------------------------------------------------------------
# Official state dicts (ContinuousSR's ``encoder.*`` block)

_ARG_NAMES = (
    "embed_dim",
    "depths",
    "num_heads",
    "window_size",
    "compress_ratio",
    "squeeze_factor",
    "conv_scale",
    "overlap_ratio",
    "mlp_ratio",
    "qkv_bias",
    "qk_scale",
    "drop_path_rate",
    "patch_norm",
    "resi_connection",
    "upsampler",
    "upscale",
)


def _ratio_for(dim: int, reduced: int) -> int:
    """The largest r with dim // r == reduced (every such r builds the same layers; the
    largest is the usual official value, e.g. 30 for 180 -> 6)."""
    r = dim // max(1, reduced)
    if r < 1 or dim // r != reduced:
        raise CheckpointError(f"no integer ratio maps {dim} channels to {reduced}")
    return r


def hat_config_from_official(sd: dict[str, torch.Tensor], args: dict | None = None) -> dict:
    """Our HAT config from an official state dict (keys relative to the encoder, i.e. without
    ``encoder.``) and the official constructor args (``encoder_spec['args']``) when stored.
    Stored args win; what is missing is read from tensor shapes (``conv_scale`` and
    ``qk_scale`` cannot be, and take the class defaults 0.01 / None)."""
    args = dict(args or {})
    if "conv_first.weight" not in sd:
        raise CheckpointError("not a HAT state dict: conv_first.weight is missing")
    dim, in_ch = (int(s) for s in sd["conv_first.weight"].shape[:2])
    depths, heads = [], []
    i = 0
    while (
        f"layers.{i}.conv.weight" in sd or f"layers.{i}.residual_group.blocks.0.norm1.weight" in sd
    ):
        n = 0
        while f"layers.{i}.residual_group.blocks.{n}.norm1.weight" in sd:
            n += 1
        depths.append(n)
        t = sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"]
        heads.append(int(t.shape[1]))
        i += 1
    if not depths:
        raise CheckpointError("not a HAT state dict: no layers.*.residual_group.blocks")
    if "conv_before_upsample.0.weight" not in sd:
        raise CheckpointError("HAT without conv_before_upsample (no upsampler) is not supported")
    table = sd["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"].shape[0]
    ws = (int(round(math.sqrt(table))) + 1) // 2
    oca = sd["layers.0.residual_group.overlap_attn.relative_position_bias_table"].shape[0]
    ws_ext = int(round(math.sqrt(oca))) - ws + 1
    b0 = "layers.0.residual_group.blocks.0."
    n_up = sum(1 for k in sd if re.fullmatch(r"upsample\.\d+\.weight", k))
    if n_up and sd["upsample.0.weight"].shape[0] == 9 * sd["upsample.0.weight"].shape[1]:
        upscale = 3
    else:
        upscale = 2**n_up
    inferred = {
        "embed_dim": dim,
        "in_channels": in_ch,
        "depths": depths,
        "num_heads": heads,
        "window_size": ws,
        "overlap_ratio": (ws_ext - ws) / ws,
        "compress_ratio": _ratio_for(dim, int(sd[b0 + "conv_block.cab.0.weight"].shape[0])),
        "squeeze_factor": _ratio_for(
            dim, int(sd[b0 + "conv_block.cab.3.attention.1.weight"].shape[0])
        ),
        "mlp_ratio": sd[b0 + "mlp.fc1.weight"].shape[0] / dim,
        "qkv_bias": (b0 + "attn.qkv.bias") in sd,
        "patch_norm": "patch_embed.norm.weight" in sd,
        "resi_connection": "1conv" if "conv_after_body.weight" in sd else "identity",
        "num_feat": int(sd["conv_before_upsample.0.weight"].shape[0]),
        "upsampler": "pixelshuffle" if n_up else "none",
        "upscale": upscale if n_up else 4,
    }
    cfg = dict(inferred)
    for k in _ARG_NAMES:
        if k in args and args[k] is not None:
            cfg[k] = list(args[k]) if k in ("depths", "num_heads") else args[k]
        elif k in args and k == "qk_scale":
            cfg[k] = None
    if "in_chans" in args:
        cfg["in_channels"] = int(args["in_chans"])
    if args.get("upsampler", "pixelshuffle") != "pixelshuffle":
        raise CheckpointError(
            f"HAT upsampler {args.get('upsampler')!r}: only 'pixelshuffle' encoders are supported"
        )
    if args.get("ape", False):
        raise CheckpointError("HAT with absolute position embedding (ape) is not supported")
    if int(args.get("patch_size", 1)) != 1:
        raise CheckpointError("HAT with patch_size != 1 is not supported")
    img = args.get("img_size", 64)
    img = min(img) if isinstance(img, (list, tuple)) else int(img)
    if img <= cfg["window_size"]:
        # The official blocks then shrink their window to the image and stop shifting.
        raise CheckpointError(f"HAT with img_size {img} <= window_size is not supported")
    for k in ("depths", "num_heads", "embed_dim", "window_size"):
        if cfg[k] != inferred[k]:
            raise CheckpointError(f"HAT args say {k}={cfg[k]} but the weights say {inferred[k]}")
    return cfg


def strip_hat_buffers(sd: dict[str, torch.Tensor], cfg: HATConfig) -> dict[str, torch.Tensor]:
    """Drop the official index buffers after checking them against ours."""
    ours = {
        "relative_position_index_SA": relative_position_index(cfg.window_size),
        "relative_position_index_OCA": overlap_relative_position_index(
            cfg.window_size, cfg.overlap_window
        ),
    }
    out = {}
    for k, v in sd.items():
        if k in ours:
            side = (cfg.window_size + cfg.overlap_window - 1) ** 2
            ref = ours[k]
            got = v.long().cpu()
            if k.endswith("OCA"):
                got = got % side  # the official values may be negative (wrapping indices)
            if got.shape != ref.shape or not torch.equal(got, ref):
                raise CheckpointError(f"{k} does not match window {cfg.window_size}")
            continue
        if k.endswith("attn_mask"):
            continue
        out[k] = v
    return out


def hat_from_official(
    sd: dict[str, torch.Tensor], args: dict | None = None, prefix: str = ""
) -> HATEncoder:
    """Build our HAT from an official (ContinuousSR-format) state dict and load it strictly.

    ``sd``: the whole model's state dict; only keys starting with ``prefix`` (e.g.
    ``"encoder."``) are used, with the prefix removed. ``args``: the official HAT constructor
    arguments (``ckpt['model']['args']['encoder_spec']['args']``) or None to infer them from
    tensor shapes. Raises :class:`CheckpointError` on any mismatch."""
    enc_sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    cfg = HATConfig(**hat_config_from_official(enc_sd, args))
    model = HATEncoder(cfg)
    enc_sd = strip_hat_buffers(enc_sd, cfg)
    missing, unexpected = model.load_state_dict(enc_sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"HAT weights do not fit: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    return model
