"""Training data settings of native experiments (the reference's DataConfig).

The datasets and loaders built from it are added with the training pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserInputError

__all__ = ["DataConfig"]


@dataclass
class DataConfig:
    """Where training images come from and how they are cut.

    ``dtd_root`` / ``div2k_root`` keep the reference's names; ``image_dirs`` takes any folders of
    images. ``image_size=None`` or ``resize_policy="original"`` selects variable resolution.
    """

    dtd_root: str = ""
    div2k_root: str = ""
    image_dirs: tuple[str, ...] = ()
    image_size: int | None = 256
    patch_size: int = 32
    dtd_split: str = "train"
    dtd_partition: int = 1
    dtd_max_images: int | None = None
    div2k_max_images: int | None = None
    val_fraction: float = 0.1
    num_workers: int = 4
    seed: int = 0
    resize_policy: str = "center_crop_or_upsample_to_size"

    def __post_init__(self) -> None:
        if isinstance(self.image_dirs, str):
            self.image_dirs = (self.image_dirs,)
        self.image_dirs = tuple(str(d) for d in self.image_dirs)
        policies = ("center_crop_or_upsample_to_size", "original")
        if self.resize_policy not in policies:
            raise UserInputError(
                f"unknown resize_policy {self.resize_policy!r}; expected {policies}"
            )
