"""Reading the encoder golden fixtures (tests/fixtures/encoders, see
tests/fixtures/generate_encoder_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "encoders"


def load_case(name: str):
    """(case metadata, official state dict as float32, all tensors, file metadata)."""
    from safetensors import safe_open

    with safe_open(str(FIXTURES / f"{name}.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    case = json.loads(meta["case"])
    sd = {
        k[len("state.") :]: (v.float() if v.is_floating_point() else v)
        for k, v in tensors.items()
        if k.startswith("state.")
    }
    return case, sd, tensors, meta
