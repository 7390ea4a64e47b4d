"""One entry point for official transformer-encoder weights inside a peer checkpoint."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import CheckpointError
from .hat import hat_from_official
from .swinir import swinir_from_official

__all__ = ["encoder_from_official"]


def encoder_from_official(
    name: str, sd: dict[str, torch.Tensor], args: dict | None = None, prefix: str = "encoder."
) -> nn.Module:
    """Our encoder for an official ``encoder_spec`` ``{'name': name, 'args': args}`` whose
    weights are the ``prefix``-ed keys of ``sd``, loaded strictly (``swinir``: LTE's or
    ContinuousSR's SwinIR, configuration read from the weights; ``hat``: ContinuousSR's HAT,
    from ``args`` or the weights). Raises :class:`CheckpointError` for other names."""
    if name == "hat":
        return hat_from_official(sd, args, prefix=prefix)
    if name == "swinir":
        return swinir_from_official(sd, prefix=prefix)
    raise CheckpointError(f"no official transformer encoder called {name!r} (hat, swinir)")
