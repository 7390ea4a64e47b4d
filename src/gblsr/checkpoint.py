"""Self-describing model files, and loading of the formats other code writes.

Our format is one safetensors file. Its tensors are the model's state dict; its metadata (a
string -> string map stored in the header) holds

    format        "gblsr.model"
    architecture  the registry name (``local_spectral``, ``gblsr_asr``, ...)
    config        JSON of the constructor config (``model.get_config()``)
    gblsr_version the version that wrote the file
    extra         optional JSON (training step, dataset, ...)

so :func:`load_model` rebuilds the right model from the file alone.

Also accepted, always without unpickling anything:
  * reference GB-LSR files: a state dict in ``.safetensors`` or ``.pt``/``.pth`` (read with
    ``torch.load(weights_only=True)``), optionally wrapped as ``{"state_dict": ..., "config": ...}``
    as the reference trainer writes it. A native model needs its RunConfig (embedded, or the YAML
    passed as ``config``); an arbitrary-scale model's architecture is read off the tensor shapes.
  * further formats registered with :func:`gblsr.registry.register_converter` by the family that
    owns them (:mod:`gblsr.asr.convert`, :mod:`gblsr.peers.convert`); this module never changes
    to add one.
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ._version import __version__
from .errors import CheckpointError, UserInputError
from .fileio import atomic_write
from .registry import converters, lookup, register_converter, resolve_variant

__all__ = [
    "FORMAT",
    "save_model",
    "load_model",
    "read_checkpoint",
    "model_identity",
    "register_converter",
    "build_from_state_dict",
    "check_config",
    "load_strict",
]

FORMAT = "gblsr.model"
# ``load_model(DEFAULT_MODEL)`` loads the model shipped inside the package (docs/default-model.md).
DEFAULT_MODEL = "default"


def default_model_path() -> Path:
    """Where the built-in default model lives inside the installed package."""
    return Path(__file__).resolve().parent / "assets" / "default_model.safetensors"


def model_identity(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """(architecture name, config dict) of a registered model."""
    name = getattr(model, "registry_name", None)
    if name is None or not hasattr(model, "get_config"):
        raise TypeError(f"{type(model).__name__} is not a registered gblsr model")
    return name, model.get_config()


def save_model(
    model: nn.Module, path: str | os.PathLike, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (weights + architecture + config + version) to one safetensors file.

    The file is written to a temporary name beside ``path`` and renamed, so an interrupted save
    never leaves a damaged file under ``path``.
    """
    from safetensors.torch import save_file

    arch, config = model_identity(model)
    # Clone so tensors that share storage (views, tied weights) serialise independently.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "architecture": arch,
        "config": json.dumps(config, sort_keys=True),
        "gblsr_version": __version__,
    }
    if extra:
        metadata["extra"] = json.dumps(extra, sort_keys=True, default=str)
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


# ---------------------------------------------------------------------------------------------
# Reading files


def _sniff(path: Path) -> str:
    """'safetensors', 'torch' or 'unknown' from the first bytes, never from the extension."""
    with open(path, "rb") as f:
        head = f.read(16)
    # safetensors first: its 8-byte little-endian header length can start with 0x80 too.
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:2] == b"PK" or (
        head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    ):
        return "torch"
    return "unknown"


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint file, loaded without unpickling.

    returns: (state_dict, info). For safetensors, info is its metadata; for torch files it is the
    non-tensor part of the saved dict (under ``"payload"``).
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"expected a checkpoint file, got a directory: {p}")
    kind = _sniff(p)
    if kind == "safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for damaged headers
            raise CheckpointError(f"damaged safetensors file {p}: {_one_line(e)}") from None
        return tensors, meta
    if kind == "torch":
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as e:
            full, msg = str(e), _one_line(e)
            if "Weights only load failed" in full or "Unsupported global" in full:
                raise CheckpointError(
                    f"{p} holds Python objects beyond tensors and plain containers; gblsr never "
                    "unpickles those (convert it to safetensors where you trust it)"
                ) from None
            raise CheckpointError(f"damaged or unreadable torch file {p}: {msg}") from None
        return _split_torch_payload(obj, p)
    raise CheckpointError(f"not a checkpoint (neither safetensors nor a torch file): {p}")


def _split_torch_payload(obj: Any, p: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} does not hold a state dict (found {type(obj).__name__})")
    if all(isinstance(v, torch.Tensor) for v in obj.values()) and obj:
        return dict(obj), {"payload": {}}
    for key in ("state_dict", "model_state_dict", "model"):
        sd = obj.get(key)
        if isinstance(sd, dict) and sd and all(isinstance(v, torch.Tensor) for v in sd.values()):
            return dict(sd), {"payload": {k: v for k, v in obj.items() if k != key}}
    # Formats whose tensors are nested deeper (e.g. {'model': {'name', 'args', 'sd'}}) are left
    # for the registered converters.
    return {}, {"payload": obj}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# ---------------------------------------------------------------------------------------------
# Building models


def build_from_state_dict(
    arch: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str = ""
) -> nn.Module:
    """Build ``arch`` from ``config`` and load ``state_dict`` strictly, with one-line errors.

    The config is checked before anything is allocated: its values (:func:`check_config`),
    then the module it describes, built on the meta device (no memory) and stopped as soon as
    it claims more tensors or elements than the file holds, against the file's tensor names and
    shapes. Only a config that fits the weights is built for real, so a crafted file costs at
    most about its own size in memory.
    """
    cls = lookup("model", arch)
    check_config(config, f"{arch} config{_src(source)}")
    budget = _Budget(state_dict)
    too_big = (
        f"the {arch} config{_src(source)} describes a larger model than the weights in the "
        "file ({}); the file is damaged or was not written for this config"
    )
    try:
        with budget, torch.device("meta"):
            meta = _construct(cls, config)
    except _TooBig as e:
        raise CheckpointError(too_big.format(e)) from None
    except Exception:
        # A constructor that computes with its tensors (e.g. .item()) cannot run on the meta
        # device; the build below, still within the file's budget, decides.
        meta = None
    if meta is not None:
        _check_fit(meta, state_dict, source)
        del meta
    try:
        with budget:
            model = _construct(cls, config)
    except _TooBig as e:
        raise CheckpointError(too_big.format(e)) from None
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, MemoryError) or "allocate" in str(e):
            raise CheckpointError(too_big.format("a weight too large to allocate")) from None
        raise CheckpointError(f"invalid {arch} config{_src(source)}: {_one_line(e)}") from None
    except Exception as e:  # any constructor error is the config's fault
        raise CheckpointError(f"invalid {arch} config{_src(source)}: {_one_line(e)}") from None
    load_strict(model, state_dict, source)
    return model


def _construct(cls, config: dict[str, Any]) -> nn.Module:
    with warnings.catch_warnings():  # torch's notes on odd configs: the checks below decide
        warnings.simplefilter("ignore", UserWarning)
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)


# Bounds on what a stored model config may hold: widths, depths and sizes are far below these
# in any real model, and anything beyond them is a damaged or crafted file.
MAX_CONFIG_INT = 1 << 20
_MAX_CONFIG_DEPTH = 8
_MAX_CONFIG_ITEMS = 4096


def check_config(config: Any, what: str = "model config") -> None:
    """Raise CheckpointError unless ``config`` is a JSON-like dict of sane values: strings,
    booleans, finite numbers, integers within +-MAX_CONFIG_INT, lists and dicts of them, nested
    at most 8 deep and 4096 values in all."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{what} must be a mapping, got {type(config).__name__}")
    count = 0

    def walk(v: Any, where: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count > _MAX_CONFIG_ITEMS or depth > _MAX_CONFIG_DEPTH:
            raise CheckpointError(f"{what} is too large or too deeply nested")
        if v is None or isinstance(v, (bool, str)):
            if isinstance(v, str) and len(v) > 4096:
                raise CheckpointError(f"{what}: {where} is an over-long string")
            return
        if isinstance(v, int):
            if abs(v) > MAX_CONFIG_INT:
                raise CheckpointError(f"{what}: {where} = {v} is out of range")
            return
        if isinstance(v, float):
            if not math.isfinite(v) or abs(v) > 1e12:
                raise CheckpointError(f"{what}: {where} = {v} is not a usable number")
            return
        if isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(k, str):
                    raise CheckpointError(f"{what}: key {k!r} of {where} is not a string")
                walk(x, f"{where}.{k}" if where else k, depth + 1)
            return
        if isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{where}[{i}]", depth + 1)
            return
        raise CheckpointError(f"{what}: {where} has an unsupported type {type(v).__name__}")

    walk(config, "", 0)


class _TooBig(Exception):
    pass


class _Budget:
    """While active, stop module construction (raise _TooBig) as soon as the parameters and
    buffers registered exceed what ``state_dict`` holds (plus slack for buffers that are not
    saved), so that building never costs much more than the file."""

    SLACK_TENSORS = 256
    SLACK_ELEMENTS = 1 << 22

    def __init__(self, state_dict: dict[str, torch.Tensor]):
        self.file_tensors = len(state_dict)
        self.file_elements = sum(t.numel() for t in state_dict.values())
        self.max_tensors = self.file_tensors + self.SLACK_TENSORS
        self.max_elements = self.file_elements + self.SLACK_ELEMENTS

    def _seen(self, t: torch.Tensor | None) -> None:
        if t is None:
            return
        self.tensors += 1
        self.elements += t.numel()
        if self.tensors > self.max_tensors:
            raise _TooBig(
                f"more than {self.tensors - 1} tensors; the file holds {self.file_tensors}"
            )
        if self.elements > self.max_elements:
            raise _TooBig(
                f"at least {self.elements:,} weights; the file holds {self.file_elements:,}"
            )

    def __enter__(self):
        from torch.nn.modules import module as m

        self.tensors = self.elements = 0
        self.handles = [
            m.register_module_parameter_registration_hook(lambda mod, n, p: self._seen(p)),
            m.register_module_buffer_registration_hook(lambda mod, n, b: self._seen(b)),
        ]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


def _check_fit(meta: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """The state dict's names and shapes against a (meta) model's, with one-line errors."""
    own = meta.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} with another shape (e.g. {shapes[0]})")
        raise CheckpointError(
            f"weights{_src(source)} do not fit the {type(meta).__name__} architecture: "
            + "; ".join(parts)
        )


def _src(source: str) -> str:
    return f" in {source}" if source else ""


def load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model`` after checking names and shapes (one-line errors)."""
    _check_fit(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)


def _model_from_config_file(config: str | os.PathLike | dict, arm_index: int) -> tuple[str, dict]:
    """(arch, config) from a RunConfig YAML (reference) or a model YAML ``{model, args}``."""
    from .models.run_config import RunConfig, expand_run_configs, load_config

    cfg = load_config(config) if not isinstance(config, dict) else config
    if "model" in cfg and isinstance(cfg["model"], (str, dict)):
        spec = cfg["model"]
        if isinstance(spec, dict):
            return resolve_variant(spec["name"], dict(spec.get("args") or {}))
        return resolve_variant(spec, dict(cfg.get("args") or {}))
    if "arms" in cfg:
        runs = expand_run_configs(cfg)
        if not runs:
            raise UserInputError("the run config lists no arms")
        if not 0 <= arm_index < len(runs):
            raise UserInputError(
                f"--arm-index {arm_index} is out of range: the config has {len(runs)} run(s)"
            )
        return _native_from_run_config(runs[arm_index])
    if "arm" in cfg and "experiment_id" in cfg:  # a single RunConfig dict (reference model.pt)
        return _native_from_run_config(RunConfig.from_dict(cfg))
    raise UserInputError("config is neither a run config (arms: ...) nor a model config (model:)")


def _native_from_run_config(rc) -> tuple[str, dict]:
    from .models.run_config import build_model_from_run_config

    # Only the name and config are wanted: build on the meta device (no memory), and stop a
    # config that would build an absurd number of modules.
    budget = _Budget({})
    budget.max_tensors, budget.max_elements = 1 << 16, 1 << 40
    try:
        with budget, torch.device("meta"):
            model = build_model_from_run_config(rc)
    except _TooBig as e:
        raise CheckpointError(
            f"the run config describes an unreasonably large model ({e})"
        ) from None
    return model.registry_name, model.get_config()


def load_model(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    config: str | os.PathLike | dict | None = None,
    arm_index: int = 0,
    local_ensemble: bool | None = None,
) -> nn.Module:
    """Load any supported checkpoint as a ready-to-run model (eval mode, on ``device``).

    path:      a checkpoint file, or ``"default"`` for the model shipped with gblsr.
    config:    a RunConfig YAML (reference native checkpoints) or a model YAML/dict
               ``{model: NAME, args: {...}}``; overrides what the file says about itself.
    arm_index: which (arm, seed) run of a RunConfig YAML.
    local_ensemble: for arbitrary-scale GB-LSR files that carry no config (reference
               state dicts), whether the checkpoint was trained with the local ensemble
               (default True, as in the reference).
    """
    if isinstance(path, str) and path == DEFAULT_MODEL and not Path(path).exists():
        path = default_model_path()
        if not path.is_file():
            raise CheckpointError("this gblsr has no built-in default model; give --checkpoint")
    sd, info = read_checkpoint(path)
    source = Path(path).name
    arch = cfg = None
    if config is not None:
        arch, cfg = _model_from_config_file(config, arm_index)
    elif info.get("format") == FORMAT:
        arch = info.get("architecture")
        try:
            cfg = json.loads(info.get("config", ""))
        except json.JSONDecodeError:
            raise CheckpointError(
                f"damaged gblsr metadata in {source}: config is not JSON"
            ) from None
    else:
        payload = info.get("payload") or {}
        embedded = payload.get("config") if isinstance(payload, dict) else None
        if isinstance(embedded, dict) and "arm" in embedded:  # reference trainer's model.pt
            arch, cfg = _native_from_run_config(_run_config_from_embedded(embedded))
        else:
            # Each method family registers its own (gblsr.asr.convert, gblsr.peers.convert).
            for conv in converters():
                found = conv(sd, info)
                if found is not None:
                    arch, cfg, sd = found
                    break
        if arch is None:
            if not sd:
                raise CheckpointError(f"no model weights found in {source}")
            if any(k.startswith("decoder.coeff_proj") or k.startswith("encoder.net.") for k in sd):
                raise CheckpointError(
                    f"{source} is a native GB-LSR state dict without its settings; pass the "
                    "RunConfig YAML it was trained with (--config)"
                )
            raise CheckpointError(f"{source} is not a checkpoint of any model gblsr knows")
    if arch == "gblsr_asr" and local_ensemble is not None:
        cfg = {
            **cfg,
            "decoder_cfg": {**cfg.get("decoder_cfg", {}), "local_ensemble": local_ensemble},
        }
    model = build_from_state_dict(arch, cfg, sd, source)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def _run_config_from_embedded(d: dict[str, Any]):
    from .models.run_config import RunConfig

    d = dict(d)
    d.setdefault("experiment_id", "checkpoint")
    d.setdefault("run_dir", "")
    d.setdefault("seed", 0)
    return RunConfig.from_dict(d, where="the checkpoint's embedded config")
