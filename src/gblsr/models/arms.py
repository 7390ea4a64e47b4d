"""Native GB-LSR: small CNN encoder + local spectral decoder, and the global Fourier-MLP control.

The image is cut into P x P patches; the encoder maps it to one feature vector per patch; one
linear projection turns each feature vector into a 3 x p_max x p_max coefficient block, and the
patch is rendered by contracting that block with the separable local basis of :mod:`.basis`.
Module names and parameter names match the reference implementation, so its state dicts load
with ``strict=True``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from ..registry import register
from .basis import (
    AdaptivityHead,
    BasisConfig,
    global_fourier_features,
    patches_to_image,
    reconstruct_patch,
)
from .shape_utils import crop_to_original, make_valid_patch_mask, pad_to_multiple

__all__ = [
    "BANDWIDTH_MODES",
    "EncoderConfig",
    "ModelConfig",
    "Encoder",
    "LocalSpectralDecoder",
    "GlobalFourierMLPDecoder",
    "LocalSpectralArm",
    "BaselineArm",
    "build_model",
    "n_params",
]

BANDWIDTH_MODES = ("fixed_midpoint", "global_scalar", "local_linear", "local_logspace")


@dataclass
class EncoderConfig:
    d_feat: int = 128
    groupnorm: int = 8


@dataclass
class ModelConfig:
    """Native model hyper-parameters. ``basis`` and ``encoder`` default to the reference's
    defaults (the reference leaves them None and fails later)."""

    arm: Literal["global_fourier_mlp", "local_spectral"]
    image_size: int = 256
    patch_size: int = 32
    basis: BasisConfig | None = None
    encoder: EncoderConfig | None = None
    n_global_freq: int = 128
    decoder_hidden: int = 256
    decoder_layers: int = 3
    max_freq_cycles_per_image: float = 16.0

    def __post_init__(self) -> None:
        if isinstance(self.basis, dict):
            self.basis = BasisConfig(**self.basis)
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        if self.basis is None:
            self.basis = BasisConfig(patch_size=self.patch_size)
        if self.encoder is None:
            self.encoder = EncoderConfig()
        if self.basis.patch_size != self.patch_size:
            raise ValueError(
                f"basis.patch_size={self.basis.patch_size} differs from "
                f"patch_size={self.patch_size}"
            )
        p = self.patch_size
        if p < 1 or p & (p - 1):
            raise ValueError(f"patch_size must be a power of two, got {p}")
        if self.encoder.d_feat % self.encoder.groupnorm:
            raise ValueError(
                f"d_feat={self.encoder.d_feat} must be divisible by groupnorm="
                f"{self.encoder.groupnorm}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        return cls(**d)


class Encoder(nn.Module):
    """Conv-GN-SiLU, then log2(P) stride-2 Conv-GN-SiLU stages, then a 3x3 conv.

    (B, 3, H, W) -> (B, d_feat, H / P, W / P). ``image_size`` is accepted for the reference's
    signature and not used: the network is fully convolutional.
    """

    def __init__(self, image_size: int, patch_size: int, cfg: EncoderConfig):
        super().__init__()
        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two, got {patch_size}")
        d = cfg.d_feat
        layers: list[nn.Module] = [
            nn.Conv2d(3, d, 3, padding=1),
            nn.GroupNorm(cfg.groupnorm, d),
            nn.SiLU(),
        ]
        for _ in range(int(math.log2(patch_size))):
            layers += [nn.Conv2d(d, d, 3, stride=2, padding=1), nn.GroupNorm(cfg.groupnorm, d)]
            layers.append(nn.SiLU())
        layers.append(nn.Conv2d(d, d, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LocalSpectralDecoder(nn.Module):
    """Per-patch coefficients, bandwidth and order from per-patch features.

    bandwidth_mode:
      fixed_midpoint  s_e fixed at the arithmetic midpoint of s_e_range (not trained)
      global_scalar   one trained scalar shared by all patches, log-space sigmoid into the range
      local_linear    per-patch s_e from the head, linear sigmoid into the range
      local_logspace  per-patch s_e from the head, log-space sigmoid into the range
    None picks local_linear when ``adapt_bandwidth`` else fixed_midpoint. The order p_soft is
    per patch from the head unless ``adapt_order`` is False (then p_soft_range's upper end).
    """

    def __init__(
        self,
        basis_cfg: BasisConfig,
        encoder_cfg: EncoderConfig,
        adapt_bandwidth: bool = True,
        adapt_order: bool = True,
        bandwidth_mode: str | None = None,
    ):
        super().__init__()
        if bandwidth_mode is None:
            bandwidth_mode = "local_linear" if adapt_bandwidth else "fixed_midpoint"
        if bandwidth_mode not in BANDWIDTH_MODES:
            raise ValueError(
                f"LocalSpectralDecoder: unknown bandwidth_mode={bandwidth_mode!r}; "
                f"expected one of {BANDWIDTH_MODES}"
            )
        self.basis_cfg = basis_cfg
        self.encoder_cfg = encoder_cfg
        self.adapt_bandwidth = adapt_bandwidth
        self.adapt_order = adapt_order
        self.bandwidth_mode = bandwidth_mode

        p = basis_cfg.p_max
        self.coeff_proj = nn.Linear(encoder_cfg.d_feat, 3 * p * p)
        nn.init.normal_(self.coeff_proj.weight, std=0.01)
        nn.init.zeros_(self.coeff_proj.bias)
        self.adaptivity = AdaptivityHead(
            encoder_cfg.d_feat,
            s_e_range=basis_cfg.s_e_range,
            p_soft_range=basis_cfg.p_soft_range,
            bandwidth_mode="local_logspace"
            if bandwidth_mode == "local_logspace"
            else "local_linear",
        )
        if bandwidth_mode == "global_scalar":
            self.global_s_raw = nn.Parameter(torch.zeros(()))
        else:
            self.register_parameter("global_s_raw", None)

    def global_bandwidth(self) -> torch.Tensor | None:
        """The shared s_e as a 0-d tensor in global_scalar mode, else None."""
        if self.global_s_raw is None:
            return None
        s_lo, s_hi = self.basis_cfg.s_e_range
        log_lo, log_hi = math.log(s_lo), math.log(s_hi)
        return torch.exp(log_lo + (log_hi - log_lo) * torch.sigmoid(self.global_s_raw))

    def set_initial_spectrum(self, s_e: float | None = None, p_soft: float | None = None) -> None:
        """Start training from bandwidth ``s_e`` and order ``p_soft`` instead of the range
        midpoints (an option; the reference always starts at the midpoints).

        Sets the raw parameter that maps to the value at the start: ``global_s_raw`` or the
        head's bias (the head's weights are zero at initialisation, so every patch starts
        there). Both values must lie strictly inside their ranges; ``fixed_midpoint`` has no
        trained bandwidth to start elsewhere.
        """

        def logit(frac: float) -> float:
            return math.log(frac / (1.0 - frac))

        with torch.no_grad():
            if s_e is not None:
                lo, hi = self.basis_cfg.s_e_range
                if self.bandwidth_mode == "fixed_midpoint":
                    raise ValueError("s_e init needs a trained bandwidth, not fixed_midpoint")
                if not lo < s_e < hi:
                    raise ValueError(f"s_e init {s_e} must lie strictly inside ({lo}, {hi})")
                if self.bandwidth_mode == "local_linear":
                    raw = logit((s_e - lo) / (hi - lo))
                else:  # global_scalar and local_logspace map through log space
                    raw = logit(math.log(s_e / lo) / math.log(hi / lo))
                if self.global_s_raw is not None:
                    self.global_s_raw.fill_(raw)
                else:
                    self.adaptivity.proj.bias[0] = raw
            if p_soft is not None:
                lo, hi = self.basis_cfg.p_soft_range
                if not lo < p_soft < hi:
                    raise ValueError(f"p_soft init {p_soft} must lie strictly inside ({lo}, {hi})")
                self.adaptivity.proj.bias[1] = logit((p_soft - lo) / (hi - lo))

    def spectral_params(
        self, feat_map: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, nH, nW) -> coeffs (B, nH, nW, 3, p, p), s_e and p_soft (B, nH, nW, 1)."""
        b, _, nh, nw = feat_map.shape
        p = self.basis_cfg.p_max
        feat = feat_map.permute(0, 2, 3, 1)
        coeffs = self.coeff_proj(feat).view(b, nh, nw, 3, p, p)
        s_e, p_soft = self.adaptivity(feat)
        if self.bandwidth_mode == "fixed_midpoint":
            s_lo, s_hi = self.basis_cfg.s_e_range
            s_e = torch.full_like(s_e, 0.5 * (s_lo + s_hi))
        elif self.bandwidth_mode == "global_scalar":
            s_e = self.global_bandwidth().expand_as(s_e)
        if not self.adapt_order:
            p_soft = torch.full_like(p_soft, self.basis_cfg.p_soft_range[1])
        return coeffs, s_e, p_soft

    def render(
        self,
        coeffs: torch.Tensor,
        s_e: torch.Tensor,
        p_soft: torch.Tensor,
        coords_1d: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Patches on a grid of local coordinates: (B, nH, nW, 3, L, L).

        ``coords_1d`` defaults to the P pixel centres of the training grid (linspace(-1, 1, P)).
        """
        if coords_1d is None:
            coords_1d = torch.linspace(
                -1.0, 1.0, self.basis_cfg.patch_size, device=coeffs.device, dtype=coeffs.dtype
            )
        if self.bandwidth_mode in ("fixed_midpoint", "global_scalar"):
            # One bandwidth for every patch: evaluate the basis once, not once per patch.
            s_e = s_e[:1, :1, :1]
        return reconstruct_patch(coeffs, s_e, p_soft, coords_1d, self.basis_cfg)

    def forward(self, feat_map: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, D, nH, nW) -> dict: coeffs, s_e, p_soft, patches (B, nH, nW, 3, P, P), recon."""
        coeffs, s_e, p_soft = self.spectral_params(feat_map)
        patches = self.render(coeffs, s_e, p_soft)
        return {
            "coeffs": coeffs,
            "s_e": s_e,
            "p_soft": p_soft,
            "patches": patches,
            "recon": patches_to_image(patches),
        }


class GlobalFourierMLPDecoder(nn.Module):
    """Control decoder with no local basis: mean-pooled code + random Fourier features -> MLP."""

    def __init__(self, image_size: int, cfg: ModelConfig):
        super().__init__()
        self.image_size = image_size
        # The reference seeds the global RNG with 0 here; drawing from a private generator
        # gives the same frequencies without resetting the caller's random stream.
        gen = torch.Generator().manual_seed(0)
        freqs = torch.randn(cfg.n_global_freq, 2, generator=gen)
        self.register_buffer("B_freq", freqs * cfg.max_freq_cycles_per_image * 0.5)
        width = cfg.decoder_hidden
        layers: list[nn.Module] = []
        d_in = 2 * cfg.n_global_freq + cfg.encoder.d_feat
        for i in range(cfg.decoder_layers):
            layers += [nn.Linear(d_in if i == 0 else width, width), nn.SiLU()]
        layers.append(nn.Linear(width, 3))
        self.mlp = nn.Sequential(*layers)

    def forward(self, feat_map: torch.Tensor) -> torch.Tensor:
        """(B, D, nH, nW) -> (B, 3, image_size, image_size)."""
        b = feat_map.shape[0]
        n = self.image_size
        t = torch.linspace(-1.0, 1.0, n, device=feat_map.device, dtype=feat_map.dtype)
        coords = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1)
        ff = global_fourier_features(coords, self.B_freq.to(feat_map.dtype)).view(1, n * n, -1)
        z = feat_map.mean(dim=(-2, -1)).view(b, 1, -1)
        inp = torch.cat([ff.expand(b, -1, -1), z.expand(-1, n * n, -1)], dim=-1)
        return self.mlp(inp).view(b, n, n, 3).permute(0, 3, 1, 2)


class _NativeArm(nn.Module):
    """What both native arms share: a config and (de)serialisation of it."""

    task = "reconstruction"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.cfg.to_dict(), **self._flags()}

    def _flags(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        config = dict(config)
        cfg = config.pop("model")
        cfg = cfg if isinstance(cfg, ModelConfig) else ModelConfig.from_dict(cfg)
        return cls(cfg, **config)


@register("model", "global_fourier_mlp")
class BaselineArm(_NativeArm):
    """Global Fourier-MLP control. Shape-locked: only ``image_size`` x ``image_size`` inputs."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.image_size, cfg.patch_size, cfg.encoder)
        self.decoder = GlobalFourierMLPDecoder(cfg.image_size, cfg)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        n = self.cfg.image_size
        if (h, w) != (n, n):
            raise NotImplementedError(
                f"BaselineArm (Global Fourier-MLP) is shape-locked to image_size={n}; "
                f"got input {h}x{w}."
            )
        recon = self.decoder(self.encoder(x))
        return {"recon": recon, "coeffs": None, "s_e": None, "p_soft": None, "patches": None}


@register("model", "local_spectral")
class LocalSpectralArm(_NativeArm):
    """GB-LSR native model for any input size: pad to the patch grid, encode, decode, crop.

    forward(x (B, 3, H, W) in [0, 1]) -> dict with ``recon`` (B, 3, H, W) (unclamped) and, on the
    padded patch grid, ``coeffs``, ``s_e``, ``p_soft``, ``patches``; plus ``pad_info`` and
    ``valid_patch_mask`` (B, nH, nW).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        adapt_bandwidth: bool = True,
        adapt_order: bool = True,
        bandwidth_mode: str | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.image_size, cfg.patch_size, cfg.encoder)
        self.decoder = LocalSpectralDecoder(
            cfg.basis,
            cfg.encoder,
            adapt_bandwidth=adapt_bandwidth,
            adapt_order=adapt_order,
            bandwidth_mode=bandwidth_mode,
        )

    def _flags(self) -> dict[str, Any]:
        d = self.decoder
        return {
            "adapt_bandwidth": d.adapt_bandwidth,
            "adapt_order": d.adapt_order,
            "bandwidth_mode": d.bandwidth_mode,
        }

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """(B, 3, H, W) -> (patch features (B, D, nH, nW), pad_info)."""
        x_pad, pad_info = pad_to_multiple(x, self.cfg.patch_size, mode="reflect")
        return self.encoder(x_pad), pad_info

    def decode(self, feat: torch.Tensor, pad_info: dict) -> dict[str, Any]:
        out: dict[str, Any] = self.decoder(feat)
        out["recon"] = crop_to_original(out["recon"], pad_info)
        out["pad_info"] = pad_info
        out["valid_patch_mask"] = make_valid_patch_mask(
            pad_info, self.cfg.patch_size, batch_size=int(feat.shape[0]), device=feat.device
        )
        return out

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return self.decode(*self.encode(x))


def build_model(
    cfg: ModelConfig,
    adapt_bandwidth: bool = True,
    adapt_order: bool = True,
    bandwidth_mode: str | None = None,
) -> nn.Module:
    """Native model for ``cfg.arm`` (``local_spectral`` or ``global_fourier_mlp``)."""
    if cfg.arm == "global_fourier_mlp":
        return BaselineArm(cfg)
    if cfg.arm == "local_spectral":
        return LocalSpectralArm(
            cfg,
            adapt_bandwidth=adapt_bandwidth,
            adapt_order=adapt_order,
            bandwidth_mode=bandwidth_mode,
        )
    raise ValueError(f"unknown arm: {cfg.arm}")


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
