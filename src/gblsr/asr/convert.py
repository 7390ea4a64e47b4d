"""Reference GB-LSR-ASR checkpoints (bare state dicts, no config) -> ``gblsr_asr``.

The reference trainer saves only the weights; the architecture is read off the tensor shapes:
the RDN's width, growth, block and layer counts from its parameter names and shapes, p_max from
the coefficient projection (3 p_max^2 output channels). The local ensemble has no weights, so the
reference default (on) applies unless the caller says otherwise (``load_model(...,
local_ensemble=False)``).
"""

from __future__ import annotations

import re

import torch

from ..registry import register_converter

__all__ = ["infer_reference_asr"]


@register_converter
def infer_reference_asr(
    sd: dict[str, torch.Tensor], info: dict | None = None
) -> tuple[str, dict, dict] | None:
    """(``"gblsr_asr"``, config, state dict) of a reference GBLSRScalarASR state dict, or None
    when ``sd`` is not one."""
    if "decoder.log_s_e" not in sd or "encoder.sfe_1.weight" not in sd:
        return None
    try:
        sfe = sd["encoder.sfe_1.weight"]
        blocks = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.rdbs\.(\d+)\.", k))}
        layers = {
            int(m.group(1))
            for k in sd
            if (m := re.match(r"encoder\.rdbs\.0\.dense_layers\.(\d+)\.", k))
        }
        growth = sd["encoder.rdbs.0.dense_layers.0.conv.weight"].shape[0]
        n_coef = sd["decoder.coeff_proj.weight"].shape[0]
    except KeyError:
        return None
    p_max = round((n_coef / 3) ** 0.5)
    if 3 * p_max * p_max != n_coef:
        return None
    encoder_cfg = {
        "num_features": int(sfe.shape[0]),
        "growth_rate": int(growth),
        "num_rdbs": len(blocks),
        "num_layers_per_rdb": len(layers),
        "kernel_size": int(sfe.shape[-1]),
        "in_channels": int(sfe.shape[1]),
    }
    config = {"encoder": "rdn", "encoder_cfg": encoder_cfg, "decoder_cfg": {"p_max": p_max}}
    return "gblsr_asr", config, sd
