"""Shared fixtures: tiny models, and ../shared when it exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import SHARED, TINY_RDN, tiny_native_config

import gblsr


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def asr_model():
    torch.manual_seed(0)
    return gblsr.GBLSRScalarASR(encoder_cfg=TINY_RDN).eval()


@pytest.fixture
def native_model():
    torch.manual_seed(0)
    m = gblsr.LocalSpectralArm(tiny_native_config(), bandwidth_mode="global_scalar").eval()
    with torch.no_grad():  # a non-trivial head, so every path shows in the output
        m.decoder.adaptivity.proj.weight.normal_(0, 0.3)
    return m
