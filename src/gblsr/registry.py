"""One registry for everything that can be built by name: models, encoders, decoders, and the
converters that read other code's checkpoint files.

This module imports nothing else of gblsr (but its errors): methods import it to register
themselves, and ``gblsr/__init__`` imports every method package, so by the time anyone looks a
name up, every built-in is registered. Adding a method is one decorator in its own file plus
one import line in its package's ``__init__``; nothing here changes.

A registered class is built from a JSON-serialisable config dict with ``cls.from_config(cfg)``
and describes itself with ``obj.get_config()``; that pair is what lets a checkpoint carry its own
architecture (see :mod:`gblsr.checkpoint`). Classes without those methods are built with
``cls(**cfg)``.

    @register("encoder", "rdn")
    class RDNEncoder(nn.Module): ...

    enc = make("encoder", "rdn", num_features=48)
    model = create_model("gblsr_asr", encoder_cfg={"num_features": 96})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import UserInputError

__all__ = [
    "register",
    "make",
    "create_model",
    "available",
    "lookup",
    "register_converter",
    "converters",
    "register_variant",
    "resolve_variant",
]

KINDS = ("model", "encoder", "decoder")
_REGISTRY: dict[str, dict[str, type]] = {k: {} for k in KINDS}


def register(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: make ``name`` buildable under ``kind``; sets ``cls.registry_name``."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")

    def deco(cls: type) -> type:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"{kind} {name!r} is already registered to {existing.__name__}")
        _REGISTRY[kind][name] = cls
        cls.registry_name = name
        return cls

    return deco


def lookup(kind: str, name: str) -> type:
    """The class registered as ``kind`` ``name``; an unknown name is a :class:`UserInputError`
    (one line, listing the known names)."""
    if kind not in _REGISTRY:
        raise UserInputError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY.get(kind, {}))) or "none"
        raise UserInputError(f"unknown {kind} {name!r}; known: {known}") from None


def make(kind: str, name: str, **config: Any):
    """Build the registered ``kind`` called ``name`` from keyword config."""
    cls = lookup(kind, name)
    if hasattr(cls, "from_config"):
        return cls.from_config(config)
    return cls(**config)


def create_model(name: str, **config: Any):
    """Build a whole model by architecture name (``local_spectral``, ``gblsr_asr``, ...) or by
    variant name (``liif_rdn``, ``gblsr_asr_edsr_baseline``, ...; ``config`` overrides the
    variant's settings)."""
    arch, config = resolve_variant(name, config)
    return make("model", arch, **config)


def available(kind: str = "model") -> list[str]:
    """Registered names of ``kind`` (``model``, ``encoder``, ``decoder`` or ``variant``),
    sorted."""
    if kind == "variant":
        return sorted(_VARIANTS)
    if kind not in _REGISTRY:
        raise UserInputError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    return sorted(_REGISTRY[kind])


# ---------------------------------------------------------------------------------------------
# Checkpoint converters

# A converter recognises a raw checkpoint (its state dict and whatever else the file held, see
# gblsr.checkpoint.read_checkpoint) and returns (architecture, config, state_dict) in our terms,
# or None when the file is not its format. Each method family registers its own.
Converter = Callable[[dict, dict], "tuple[str, dict, dict] | None"]
_CONVERTERS: list[Converter] = []


def register_converter(fn: Converter) -> Converter:
    """Decorator: teach :func:`gblsr.load_model` another checkpoint format."""
    if fn not in _CONVERTERS:
        _CONVERTERS.append(fn)
    return fn


def converters() -> list[Converter]:
    """The registered converters, in registration order."""
    return list(_CONVERTERS)


# ---------------------------------------------------------------------------------------------
# Named variants (timm-style): a registered model with preset arguments

_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {}


def register_variant(name: str, model: str, **config: Any) -> None:
    """Name a configuration of the registered model ``model``, so that
    ``create_model(name, **overrides)`` (and a recipe's ``model: {name: ...}``) builds it.
    Checkpoints still record the model's own name and its full config."""
    existing = _VARIANTS.get(name)
    if existing is not None and existing != (model, config):
        raise ValueError(f"variant {name!r} is already registered as {existing[0]}")
    _VARIANTS[name] = (model, config)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in overrides.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_variant(name: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(model name, config) for ``name``: a variant's model and its preset arguments with
    ``config`` merged over them (nested dicts key by key); other names pass through."""
    if name in _VARIANTS:
        model, preset = _VARIANTS[name]
        return model, _merge(preset, config)
    return name, dict(config)
