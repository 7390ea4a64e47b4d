"""Official LIIF / LTE / LMF checkpoints -> gblsr models.

The official training scripts save ``{'model': {'name', 'args', 'sd'}, 'optimizer': ..., 'epoch':
...}``: ``name`` is the registered model (``liif``, ``lte``, ``lte-fast``, ``lmliif``, ``lmlte``),
``args`` its constructor arguments (with ``encoder_spec`` = {'name', 'args'} for
``edsr-baseline``, ``edsr`` or ``rdn``) and ``sd`` its state dict. :func:`convert_official` maps
such a spec to (architecture, config, state dict) of our models; arguments we do not know are
ignored (e.g. ``cmsr_spec``, an encoder's ``scale``). It is registered with
:func:`gblsr.checkpoint.register_converter`, so ``gblsr.load_model`` and every ``--checkpoint``
accept these files (read with ``torch.load(weights_only=True)``).

SwinIR encoders (``swinir``) keep the official names; their configuration is read from the
weights (both official factories ignore their args) and their ``relative_position_index`` /
``attn_mask`` buffers are checked and dropped (ours are recomputed per input size).

Key mappings: EDSR and the decoders keep the official names; RDN's are renamed to our encoder's
(``SFENet1`` -> ``sfe_1``, ``RDBs.d.convs.c.conv.0`` -> ``rdbs.d.dense_layers.c.conv``,
``RDBs.d.LFF`` -> ``rdbs.d.local_feature_fusion``, ``GFF.0/1`` -> ``gff_1x1/gff_3x3``). LTE+
(``lte-fast``) weights become LTE weights: its frequency channels pair (k, K + k) where LTE pairs
(2k, 2k + 1), so ``freq`` rows are interleaved, and its 1x1-conv MLP becomes Linear layers.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..checkpoint import register_converter
from ..encoders.swinir import swinir_official_block as swinir_encoder_block
from ..errors import CheckpointError

__all__ = [
    "OFFICIAL_NAMES",
    "is_official_spec",
    "convert_official",
    "convert_encoder",
    "lte_plus_to_lte",
]

OFFICIAL_NAMES = ("liif", "lte", "lte-fast", "lmliif", "lmlte")

# RDN configurations of the official factory: (blocks D, layers per block C, growth G).
_RDN_CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}


def is_official_spec(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("name"), str)
        and isinstance(obj.get("args"), dict)
        and isinstance(obj.get("sd"), dict)
    )


def _args(spec: dict | None, what: str) -> dict:
    if not isinstance(spec, dict) or not isinstance(spec.get("args", {}), dict):
        raise CheckpointError(f"the official checkpoint has no valid {what}")
    return dict(spec.get("args") or {})


def convert_encoder(spec: dict) -> tuple[str, dict, Any]:
    """Official encoder spec -> (our encoder name, its config, key renamer)."""
    name = spec.get("name") if isinstance(spec, dict) else None
    a = _args(spec, "encoder_spec")
    if name in ("edsr-baseline", "edsr"):
        full = name == "edsr"
        if not a.get("no_upsampling", False):
            raise CheckpointError(f"{name} with an upsampler is not an encoder of these models")
        cfg = {
            "num_blocks": int(a.get("n_resblocks", 32 if full else 16)),
            "num_features": int(a.get("n_feats", 256 if full else 64)),
            "res_scale": float(a.get("res_scale", 0.1 if full else 1)),
        }
        return "edsr", cfg, lambda k: k
    if name == "rdn":
        if not a.get("no_upsampling", False):
            raise CheckpointError("rdn with an upsampler is not an encoder of these models")
        blocks, layers, growth = _RDN_CONFIGS.get(a.get("RDNconfig", "B"), (None,) * 3)
        if blocks is None:
            raise CheckpointError(f"unknown RDNconfig {a.get('RDNconfig')!r}")
        cfg = {
            "num_features": int(a.get("G0", 64)),
            "growth_rate": growth,
            "num_rdbs": blocks,
            "num_layers_per_rdb": layers,
            "kernel_size": int(a.get("RDNkSize", 3)),
        }
        return "rdn", cfg, _rename_rdn
    if name == "swinir":  # the official factories ignore args: the config comes from the weights
        return "swinir", None, lambda k: k
    raise CheckpointError(f"unsupported encoder {name!r} in the official checkpoint")


_RDN_RULES = [
    (re.compile(r"^SFENet1\."), "sfe_1."),
    (re.compile(r"^SFENet2\."), "sfe_2."),
    (re.compile(r"^RDBs\.(\d+)\.convs\.(\d+)\.conv\.0\."), r"rdbs.\1.dense_layers.\2.conv."),
    (re.compile(r"^RDBs\.(\d+)\.LFF\."), r"rdbs.\1.local_feature_fusion."),
    (re.compile(r"^GFF\.0\."), "gff_1x1."),
    (re.compile(r"^GFF\.1\."), "gff_3x3."),
]


def _rename_rdn(key: str) -> str:
    for pattern, repl in _RDN_RULES:
        new, n = pattern.subn(repl, key)
        if n:
            return new
    return key


def _mlp_hidden(spec: dict | None, what: str) -> list[int]:
    a = _args(spec, what)
    if int(a.get("out_dim", 3)) != 3:
        raise CheckpointError(f"{what} must output 3 channels")
    return [int(v) for v in a.get("hidden_list", [])]


def lte_plus_to_lte(sd: dict[str, torch.Tensor], hidden_dim: int) -> dict[str, torch.Tensor]:
    """LTE+ (``lte-fast``) decoder weights -> LTE (``lte``) weights (keys without ``encoder.``
    are decoder keys; encoder keys pass through)."""
    half = hidden_dim // 2
    order = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)
    out = {}
    for k, v in sd.items():
        if k in ("freq.weight", "freq.bias"):
            v = v[order]
        m = re.match(r"^layers\.(\d+)\.(weight|bias)$", k)
        if m:
            k = f"imnet.layers.{m.group(1)}.{m.group(2)}"
            if m.group(2) == "weight":
                v = v.reshape(v.shape[0], v.shape[1])
        out[k] = v
    return out


def _lmf_imnet(a: dict) -> dict:
    im = _args(a.get("imnet_spec"), "imnet_spec")
    if a.get("hypernet_spec") is None:
        raise CheckpointError("LMF checkpoints without a hypernet (latent MLP) are not supported")
    if im.get("use_conv", False):
        raise CheckpointError("LMF render MLPs with use_conv are not supported")
    if int(im.get("out_dim", 3)) != 3:
        raise CheckpointError("imnet_spec must output 3 channels")
    return {
        "hidden_dim": int(im["hidden_dim"]),
        "hidden_depth": int(im["hidden_depth"]),
        "mod_scale": bool(im.get("mod_scale", True)),
        "mod_shift": bool(im.get("mod_shift", True)),
        "hypernet_hidden": [
            int(v) for v in _args(a["hypernet_spec"], "hypernet_spec").get("hidden_list", [])
        ],
        "mod_input": bool(a.get("mod_input", False)),
        "local_ensemble": bool(a.get("local_ensemble", True)),
        "cell_decode": bool(a.get("cell_decode", True)),
    }


def convert_official(spec: dict) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """``ckpt['model']`` of an official file -> (architecture, config, state dict)."""
    name, a, sd = spec["name"], dict(spec["args"]), dict(spec["sd"])
    if name == "continuous-gaussian":
        from .continuoussr_convert import convert_continuoussr

        return convert_continuoussr(spec)
    if name not in OFFICIAL_NAMES:
        raise CheckpointError(
            f"official model {name!r} is not supported (supported: {', '.join(OFFICIAL_NAMES)})"
        )
    enc_name, enc_cfg, rename = convert_encoder(a.get("encoder_spec"))
    if enc_name == "swinir":
        enc_cfg, sd = swinir_encoder_block(sd)
    base = {"encoder": enc_name, "encoder_cfg": enc_cfg}
    if name == "liif":
        if a.get("imnet_spec") is None:
            raise CheckpointError("LIIF checkpoints without an MLP (imnet) are not supported")
        arch, cfg = (
            "liif",
            {
                **base,
                "hidden": _mlp_hidden(a["imnet_spec"], "imnet_spec"),
                "local_ensemble": bool(a.get("local_ensemble", True)),
                "feat_unfold": bool(a.get("feat_unfold", True)),
                "cell_decode": bool(a.get("cell_decode", True)),
                "cell_clip": None,
            },
        )
    elif name == "lte":
        arch, cfg = (
            "lte",
            {
                **base,
                "hidden_dim": int(a.get("hidden_dim", 256)),
                "hidden": _mlp_hidden(a.get("imnet_spec"), "imnet_spec"),
            },
        )
    elif name == "lte-fast":
        dim = int(a.get("hidden_dim", 256))
        if int(a.get("out_dim", 3)) != 3:
            raise CheckpointError("lte-fast must output 3 channels")
        arch, cfg = "lte", {**base, "hidden_dim": dim, "hidden": [dim] * int(a.get("num_layer", 3))}
        sd = lte_plus_to_lte(sd, dim)
    elif name == "lmliif":
        arch, cfg = (
            "lmliif",
            {
                **base,
                **_lmf_imnet(a),
                "feat_unfold": bool(a.get("feat_unfold", True)),
            },
        )
    else:
        arch, cfg = "lmlte", {**base, **_lmf_imnet(a), "lte_dim": int(a.get("hidden_dim", 128))}
    out = {}
    for k, v in sd.items():
        if k.startswith("encoder."):
            k = "encoder." + rename(k[len("encoder.") :])
        out[k] = v
    return arch, cfg, out


@register_converter
def _official_converter(sd: dict, info: dict):
    payload = info.get("payload")
    if not isinstance(payload, dict):
        return None
    spec = payload.get("model")
    if not is_official_spec(spec):
        return None
    return convert_official(spec)
