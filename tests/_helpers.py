"""Helpers shared by tests: tiny configs, image writers, the ../shared path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gblsr.models import BasisConfig, EncoderConfig, ModelConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TINY_RDN = dict(num_features=8, growth_rate=8, num_rdbs=2, num_layers_per_rdb=2)


def tiny_native_config(**basis) -> ModelConfig:
    return ModelConfig(
        arm="local_spectral",
        patch_size=8,
        basis=BasisConfig(patch_size=8, p_max=basis.pop("p_max", 6), **basis),
        encoder=EncoderConfig(d_feat=16, groupnorm=4),
    )


def write_png(path: Path, h: int, w: int, mode: str = "RGB", seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path)
    return path
