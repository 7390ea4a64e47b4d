"""Official ContinuousSR checkpoints -> gblsr's ``continuoussr`` model.

The official file is LIIF's format: ``ckpt['model'] = {'name': 'continuous-gaussian', 'args':
{'encoder_spec': {'name', 'args'}, 'cnn_spec', 'fc_spec', ...}, 'sd': state dict}``. The head
keys (``conv1``, ``mlp_vector``, ``mlp``, ``mlp_offset``) are ours unchanged; the encoder (HAT
for the released weights, SwinIR in the paper) is built from the stored args and tensor shapes
by :func:`gblsr.encoders.encoder_from_official`, which also checks and drops the official
index/mask buffers. ``cnn_spec`` / ``fc_spec`` are unused by the model.

What the file cannot say is which offset-head input the weights were trained with (raw features
at the release commit 482ec14, LeakyReLU features at HEAD): the converted model uses HEAD's
(``offset_input="lrelu"``) unless told otherwise; set ``model.offset_input = "raw"`` (or pass
``offset_input`` here) to switch. ContinuousSR's released weights are licensed CC BY-NC 4.0
(non-commercial); the converted model records that in its config (``weights_licence``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import CheckpointError
from .continuoussr import OFFSET_INPUTS, WEIGHTS_LICENCE
from .convert import register_official

__all__ = ["OFFICIAL_NAME", "convert_continuoussr"]

OFFICIAL_NAME = "continuous-gaussian"
HEAD_PREFIXES = ("conv1.", "mlp_vector.", "mlp.", "mlp_offset.")


def _encoder(name: Any, args: dict, enc_sd: dict[str, torch.Tensor]) -> tuple[str, dict, dict]:
    """(our encoder name, config, encoder state dict without official-only buffers)."""
    if name not in ("hat", "swinir"):
        raise CheckpointError(
            f"ContinuousSR encoder {name!r} is not supported: the Gaussian heads need a "
            "64-channel x4 feature map (official 'hat' or 'swinir')"
        )
    from ..encoders.official import encoder_from_official

    enc = encoder_from_official(name, enc_sd, args, prefix="")
    return name, enc.get_config(), enc.state_dict()


def convert_continuoussr(
    spec: dict, offset_input: str = "lrelu"
) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """``ckpt['model']`` of an official ContinuousSR file -> (architecture, config, state dict)."""
    if offset_input not in OFFSET_INPUTS:
        raise CheckpointError(f"offset_input must be one of {OFFSET_INPUTS}")
    args, sd = dict(spec.get("args") or {}), dict(spec["sd"])
    enc_spec = args.get("encoder_spec")
    if not isinstance(enc_spec, dict) or not isinstance(enc_spec.get("args", {}), dict):
        raise CheckpointError("the official ContinuousSR checkpoint has no valid encoder_spec")
    enc_sd = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    if not enc_sd:
        raise CheckpointError("the official ContinuousSR checkpoint has no encoder weights")
    other = [k for k in sd if not k.startswith("encoder.") and not k.startswith(HEAD_PREFIXES)]
    if other:
        raise CheckpointError(f"unexpected keys in the ContinuousSR checkpoint: {other[:3]}")
    enc_name, enc_cfg, enc_sd = _encoder(
        enc_spec.get("name"), dict(enc_spec.get("args") or {}), enc_sd
    )
    if int(enc_cfg.get("num_feat", 64)) != 64 or int(enc_cfg.get("upscale", 4)) != 4:
        raise CheckpointError("the ContinuousSR encoder must give 64 channels at x4")
    out = {k: v for k, v in sd.items() if not k.startswith("encoder.")}
    out.update({f"encoder.{k}": v for k, v in enc_sd.items()})
    cfg = {
        "encoder": enc_name,
        "encoder_cfg": enc_cfg,
        "offset_input": offset_input,
        "l21_scale": "height",
        "tile_cap": None,
        "weights_licence": WEIGHTS_LICENCE,
    }
    return "continuoussr", cfg, out


@register_official("continuous-gaussian")
def _convert_official(args: dict, sd: dict) -> tuple[str, dict, dict[str, torch.Tensor]]:
    return convert_continuoussr({"name": "continuous-gaussian", "args": args, "sd": sd})
