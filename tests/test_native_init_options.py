"""The native s_e_init / p_soft_init options: start values, defaults unchanged, errors."""

import pytest
import torch

from gblsr.errors import UserInputError
from gblsr.training.config import RunConfig, build_model_from_run_config


def _rc(**kw):
    base = dict(
        experiment_id="t",
        run_dir="unused",
        arm="local_spectral",
        seed=0,
        image_size=16,
        patch_size=8,
        d_feat=8,
        groupnorm=4,
        p_max=4,
    )
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("mode", ["global_scalar", "local_linear", "local_logspace"])
def test_initial_spectrum_is_the_requested_value(mode):
    torch.manual_seed(0)
    m = build_model_from_run_config(_rc(bandwidth_mode=mode, s_e_init=1.4, p_soft_init=3.25))
    out = m(torch.rand(2, 3, 16, 24))
    torch.testing.assert_close(out["s_e"], torch.full_like(out["s_e"], 1.4))
    torch.testing.assert_close(out["p_soft"], torch.full_like(out["p_soft"], 3.25))


def test_default_keeps_the_reference_midpoints():
    torch.manual_seed(0)
    m = build_model_from_run_config(_rc(bandwidth_mode="global_scalar"))
    out = m(torch.rand(1, 3, 16, 16))
    assert torch.allclose(out["s_e"], torch.tensor(0.5**0.5), atol=1e-6)  # sqrt(0.25 * 2)
    assert torch.allclose(out["p_soft"], torch.tensor(8.5))  # midpoint of (1, 16)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(bandwidth_mode="global_scalar", s_e_init=2.0), "strictly inside"),
        (dict(bandwidth_mode="global_scalar", p_soft_init=0.5), "strictly inside"),
        (dict(bandwidth_mode="fixed_midpoint", s_e_init=1.0), "fixed_midpoint"),
    ],
)
def test_bad_start_values_are_user_errors(kw, msg):
    with pytest.raises(UserInputError, match=msg):
        build_model_from_run_config(_rc(**kw))
