"""Official GaussianSR checkpoints (``{'model': {'name': 'gaussian-splatter', 'args', 'sd'}}``)
-> (``gaussiansr``, config, state dict).

Official args: ``encoder_spec`` (``edsr-baseline`` or ``edsr-large``, both without upsampler;
``n_class`` = ``num_points``), ``dec_spec`` (``mlp``: ``hidden_list``, GELU), ``kernel_size``,
``hidden_dim`` (256), ``unfold_row`` = ``unfold_column`` (7), ``num_points`` (100). Keys:
``encoder.edsr.*`` -> ``encoder.*`` (including the unused MeanShift convs, kept frozen),
``encoder.segmentation_head.0.*`` -> ``classifier.*``; the rest keep their names. Converted
models use the official ``selection="gumbel"``.
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from .convert import convert_encoder, register_official

__all__ = ["convert_gaussiansr"]


def _rename(key: str) -> str:
    if key.startswith("encoder.edsr."):
        return "encoder." + key[len("encoder.edsr.") :]
    if key.startswith("encoder.segmentation_head.0."):
        return "classifier." + key[len("encoder.segmentation_head.0.") :]
    return key


@register_official("gaussian-splatter")
def convert_gaussiansr(a: dict, sd: dict) -> tuple[str, dict, dict[str, torch.Tensor]]:
    enc = a.get("encoder_spec")
    if not isinstance(enc, dict) or enc.get("name") not in ("edsr-baseline", "edsr-large"):
        raise CheckpointError("GaussianSR checkpoints with this encoder are not supported")
    enc_args = dict(enc.get("args") or {})
    enc_args.setdefault("no_upsampling", True)
    num_points = int(a.get("num_points", 100))
    if int(enc_args.pop("n_class", num_points)) != num_points:
        raise CheckpointError("the encoder's n_class differs from num_points")
    full = enc["name"] == "edsr-large"
    _, enc_cfg, _ = convert_encoder({"name": "edsr" if full else "edsr-baseline", "args": enc_args})
    dec = a.get("dec_spec") or {}
    dargs = dict(dec.get("args") or {})
    if dec.get("name") != "mlp" or int(dargs.get("out_dim", 3)) != 3:
        raise CheckpointError("GaussianSR's decoder must be an 'mlp' with 3 outputs")
    if str(dargs.get("act", "gelu")).lower() != "gelu":
        raise CheckpointError(f"decoder activation {dargs.get('act')!r} is not supported (gelu)")
    row, col = int(a.get("unfold_row", 7)), int(a.get("unfold_column", 7))
    if row != col:
        raise CheckpointError(f"unfold_row != unfold_column ({row}, {col}) is not supported")
    if "kernel_size" not in a:
        raise CheckpointError("the official GaussianSR args have no kernel_size")
    cfg = {
        "encoder": "edsr",
        "encoder_cfg": enc_cfg,
        "hidden_dim": int(a.get("hidden_dim", 256)),
        "hidden": [int(v) for v in dargs.get("hidden_list", [])],
        "kernel_size": int(a["kernel_size"]),
        "num_kernels": num_points,
        "patch": row,
        "selection": "gumbel",
    }
    return "gaussiansr", cfg, {_rename(k): v for k, v in sd.items()}
