"""Native GB-LSR: configs, models, the local basis and the padding helpers."""

from .arms import (
    BANDWIDTH_MODES,
    BaselineArm,
    Encoder,
    EncoderConfig,
    GlobalFourierMLPDecoder,
    LocalSpectralArm,
    LocalSpectralDecoder,
    ModelConfig,
    build_model,
    n_params,
)
from .basis import (
    AdaptivityHead,
    BasisConfig,
    build_1d_basis,
    fourier_basis_1d,
    global_fourier_features,
    image_to_patches,
    make_patch_coords,
    patches_to_image,
    reconstruct_patch,
    soft_order_mask,
)
from .shape_utils import crop_to_original, make_valid_patch_mask, pad_to_multiple

__all__ = [
    "LocalSpectralArm",
    "BaselineArm",
    "LocalSpectralDecoder",
    "GlobalFourierMLPDecoder",
    "Encoder",
    "build_model",
    "n_params",
    "BANDWIDTH_MODES",
    "ModelConfig",
    "EncoderConfig",
    "BasisConfig",
    "AdaptivityHead",
    "build_1d_basis",
    "fourier_basis_1d",
    "global_fourier_features",
    "image_to_patches",
    "make_patch_coords",
    "patches_to_image",
    "reconstruct_patch",
    "soft_order_mask",
    "pad_to_multiple",
    "crop_to_original",
    "make_valid_patch_mask",
]
