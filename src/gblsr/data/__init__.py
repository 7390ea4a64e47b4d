"""Data: image I/O, MATLAB/Pillow resizing, evaluation datasets and region labels.

Everything in :mod:`gblsr.data.image_io` is re-exported here, and every image gblsr reads goes
through it.
"""

from .datasets import (
    LR_SOURCES,
    BenchmarkImages,
    DIV2KImages,
    DTDImages,
    FlatImageFolder,
    ImageDataset,
    ImageTooSmallError,
    KodakImages,
    SRPairs,
    SRSample,
    make_lr,
    open_dataset,
)
from .image_io import (
    IMAGE_EXTENSIONS,
    ImageData,
    atomic_write,
    read_image,
    read_rgb_uint8,
    to_uint8,
    write_image,
)
from .regions import (
    REGIONS,
    RegionThresholds,
    fit_region_thresholds,
    label_patches,
    load_or_fit_thresholds,
    load_thresholds,
    per_patch_edge_density,
    per_patch_hf_fraction,
    save_thresholds,
)
from .resize import (
    hr_crop_for_scale,
    imresize,
    lr_size_for_scale,
    output_size,
    pil_bicubic,
    pil_resize,
)
from .training_data import (
    BUILTIN_SAMPLES,
    DataConfig,
    ImageSource,
    PatchCropDataset,
    ResumableBatchSampler,
    SRImplicitDownsampled,
    build_datasets,
    builtin_samples_dir,
    collate,
    collate_with_meta,
    make_collate,
    varres_collate,
)

__all__ = [
    # image_io
    "IMAGE_EXTENSIONS",
    "ImageData",
    "atomic_write",
    "read_image",
    "read_rgb_uint8",
    "to_uint8",
    "write_image",
    # resize
    "imresize",
    "pil_resize",
    "pil_bicubic",
    "output_size",
    "lr_size_for_scale",
    "hr_crop_for_scale",
    # datasets
    "ImageDataset",
    "BenchmarkImages",
    "DIV2KImages",
    "DTDImages",
    "KodakImages",
    "FlatImageFolder",
    "open_dataset",
    "SRSample",
    "SRPairs",
    "make_lr",
    "LR_SOURCES",
    "ImageTooSmallError",
    # regions
    "REGIONS",
    "RegionThresholds",
    "label_patches",
    "fit_region_thresholds",
    "save_thresholds",
    "load_thresholds",
    "load_or_fit_thresholds",
    "per_patch_hf_fraction",
    "per_patch_edge_density",
    # training data
    "DataConfig",
    "BUILTIN_SAMPLES",
    "builtin_samples_dir",
    "ImageSource",
    "PatchCropDataset",
    "build_datasets",
    "SRImplicitDownsampled",
    "ResumableBatchSampler",
    "collate",
    "collate_with_meta",
    "varres_collate",
    "make_collate",
]
