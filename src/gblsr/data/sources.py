"""Where training images come from: :class:`DataConfig`, image folders (``builtin:samples`` for
the photos shipped in the package), :class:`ImageSource` and the seeded train / validation
split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserInputError
from .image_io import read_rgb_uint8

__all__ = [
    "DataConfig",
    "BUILTIN_SAMPLES",
    "LR_KERNELS",
    "builtin_samples_dir",
    "resolve_image_dir",
    "ImageSource",
    "open_training_images",
    "split_train_val",
]

BUILTIN_SAMPLES = "builtin:samples"
LR_KERNELS = ("pil", "matlab")


@dataclass
class DataConfig:
    """Where training images come from and how they are cut.

    ``dtd_root`` / ``div2k_root`` keep the reference's names; ``image_dirs`` takes any folders of
    images (``builtin:samples`` for the photos shipped with the package). ``image_size=None``
    or ``resize_policy="original"`` selects variable resolution (whole images, batch size 1).
    Training crops are random per (seed, run seed, epoch, sample); ``augment`` adds random
    flips and transposes. Validation images get centre crops.
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
    augment: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.image_dirs, str):
            self.image_dirs = (self.image_dirs,)
        self.image_dirs = tuple(str(d) for d in self.image_dirs)
        policies = ("center_crop_or_upsample_to_size", "original")
        if self.resize_policy not in policies:
            raise UserInputError(
                f"unknown resize_policy {self.resize_policy!r}; expected {policies}"
            )
        if self.image_size is not None and int(self.image_size) < 1:
            raise UserInputError(f"data.image_size must be positive or null, got {self.image_size}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise UserInputError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if int(self.num_workers) < 0:
            raise UserInputError(f"data.num_workers must be >= 0, got {self.num_workers}")

    @property
    def mode(self) -> str:
        """``"locked"`` (fixed-size crops) or ``"varres"`` (whole images)."""
        if self.image_size is None or self.resize_policy == "original":
            return "varres"
        return "locked"


# --------------------------------------------------------------------------- folders


def builtin_samples_dir() -> Path:
    """Folder of the sample photos shipped inside the package."""
    from importlib import resources

    ref = resources.files("gblsr") / "assets"
    path = Path(str(ref))
    if not path.is_dir():  # a zipped install: nothing to point a folder reader at
        raise UserInputError(
            "the package's sample images are not available as files in this installation "
            f"({ref}); install gblsr from a wheel or source tree"
        )
    return path


def resolve_image_dir(spec: str | os.PathLike) -> Path:
    """``builtin:samples`` -> the package's sample folder; anything else -> a path (``~``
    expanded; relative paths are relative to the current directory)."""
    text = str(spec).strip()
    if text in (BUILTIN_SAMPLES, "package://assets", "builtin://samples"):
        return builtin_samples_dir()
    if text.startswith("builtin:"):
        raise UserInputError(
            f"unknown built-in image set {text!r}; the only one is {BUILTIN_SAMPLES}"
        )
    if not text:
        raise UserInputError("empty image folder name in the config")
    return Path(os.path.expanduser(text))


def _open_folder(spec: str | os.PathLike, max_images: int | None = None):
    """An :class:`gblsr.data.ImageDataset` for a training folder (DIV2K: the training split)."""
    from .datasets import DIV2KImages, open_dataset

    root = resolve_image_dir(spec)
    if (root / "DIV2K_train_HR").is_dir():
        return DIV2KImages(root, split="train", max_images=max_images)
    return open_dataset(root, max_images=max_images)


def open_training_images(cfg: DataConfig) -> list[tuple[str, list[Path]]]:
    """(source name, image paths) for every configured source: DTD, DIV2K, then ``image_dirs``."""
    from .datasets import DIV2KImages, DTDImages, FlatImageFolder

    sources: list[tuple[str, list[Path]]] = []
    if cfg.dtd_root:
        ds = DTDImages(
            resolve_image_dir(cfg.dtd_root),
            split=cfg.dtd_split,
            partition=cfg.dtd_partition,
            max_images=cfg.dtd_max_images,
        )
        sources.append(("dtd", list(ds.paths)))
    if cfg.div2k_root:
        root = resolve_image_dir(cfg.div2k_root)
        if (root / "DIV2K_train_HR").is_dir() or root.name == "DIV2K_train_HR":
            ds = DIV2KImages(root, split="train", max_images=cfg.div2k_max_images)
        elif root.is_dir():
            ds = FlatImageFolder(root, exts=(".png",), max_images=cfg.div2k_max_images)
        else:
            raise UserInputError(f"DIV2K folder not found: {root}")
        sources.append(("div2k", list(ds.paths)))
    for spec in cfg.image_dirs:
        ds = _open_folder(spec)
        name = ds.name if spec != BUILTIN_SAMPLES else "samples"
        sources.append((name, list(ds.paths)))
    if not sources:
        raise UserInputError(
            "no training images configured: set data.image_dirs (any folders of images, or "
            f"{BUILTIN_SAMPLES}) or data.dtd_root / data.div2k_root"
        )
    for name, paths in sources:
        if not paths:
            raise UserInputError(f"training source {name!r} holds no images")
    return sources


class ImageSource:
    """A list of image files read as (3, H, W) uint8, optionally kept in memory.

    cache: ``"none"`` (read the file each time) or ``"memory"`` (read every image once, up
    front, so loader workers share the decoded pixels).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], cache: str = "none", name: str = ""):
        if cache not in ("none", "memory"):
            raise UserInputError(f"unknown image cache {cache!r}; use 'none' or 'memory'")
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise UserInputError(f"image source {name or '?'} holds no images")
        self.name = name
        self.cache = cache
        self._images: list[torch.Tensor] | None = None
        if cache == "memory":
            self._images = [read_rgb_uint8(p) for p in self.paths]

    @classmethod
    def from_dirs(
        cls, dirs: Sequence[str], cache: str = "none", first_k: int | None = None
    ) -> ImageSource:
        paths: list[Path] = []
        for d in dirs:
            paths.extend(_open_folder(d).paths)
        if first_k is not None:
            paths = paths[: int(first_k)]
        if not paths:
            raise UserInputError(f"no images found in {', '.join(map(str, dirs))}")
        return cls(paths, cache=cache, name=",".join(map(str, dirs)))

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> torch.Tensor:
        if self._images is not None:
            return self._images[i]
        return read_rgb_uint8(self.paths[i])


def split_train_val(
    paths: Sequence[Path], val_fraction: float, seed: int
) -> tuple[list[Path], list[Path]]:
    """Seeded split of one source: the first ``max(1, int(val_fraction * n))`` of a random
    permutation go to validation (none when val_fraction is 0 or the source has one image)."""
    n = len(paths)
    n_val = max(1, int(val_fraction * n)) if (val_fraction > 0 and n >= 2) else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    val = [paths[i] for i in perm[:n_val]]
    train = [paths[i] for i in perm[n_val:]]
    return train, val
