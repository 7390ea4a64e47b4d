"""Image datasets in the layouts SR work uses, and HR/LR pairs for a given scale.

Layouts (:func:`open_dataset` detects them):

* ``benchmark`` (EDSR's ``benchmark.tar``): ``<root>/HR/<name>.png`` and, optionally,
  ``<root>/LR_bicubic/X<s>/<name>x<s>.png``.
* ``div2k``: ``<root>/DIV2K_valid_HR/`` (or ``DIV2K_train_HR/``) with the official
  ``DIV2K_<split>_LR_bicubic/X<s>/<name>x<s>.png``; the validation split is preferred.
* ``dtd``: the Describable Textures Dataset, ``<root>[/dtd[/dtd]]/images/<class>/*.jpg`` with
  ``labels/<split><partition>.txt`` lists (all images when the lists are missing).
* ``kodak``: ``kodim*.png`` in the folder.
* ``flat``: any other folder of images (searched recursively, hidden entries skipped).

Every image is read through :mod:`gblsr.data.image_io` (``read_rgb_uint8``), so grey, palette,
RGBA and 16-bit files all become 8-bit RGB the same way.

LR images for scale s (:class:`SRPairs`), with ``lr_source``:

* ``"auto"`` (default): the dataset's own LR file when it exists (integer s), the HR then cropped at
  the top-left to (h_lr s, w_lr s); otherwise h_lr = floor(H / s + 1e-9) (same for w), the HR
  cropped to (round(h_lr s), round(w_lr s)) and the LR made from the 8-bit crop with MATLAB
  bicubic, ``imresize(hr_crop, [h_lr w_lr], 'bicubic')`` (:func:`gblsr.data.imresize`, uint8
  semantics). For integer s this reproduces the benchmark files exactly.
* ``"matlab"``: always make the LR as above, ignoring any files.
* ``"pil"``: always make the LR with Pillow bicubic (LMF's and ContinuousSR's test protocol).
* ``"liif"``: the files when they exist, else Pillow bicubic (LIIF/LTE/GaussianSR's protocol).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import ImageError, UserInputError
from .image_io import IMAGE_EXTENSIONS, read_rgb_uint8
from .resize import hr_crop_for_scale, imresize, lr_size_for_scale, pil_bicubic

__all__ = [
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
]

LR_SOURCES = ("auto", "matlab", "pil", "liif")


class ImageTooSmallError(ValueError):
    """The image has no LR pixel left at this scale (e.g. a 20-pixel image at x30)."""


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _list_images(folder: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return sorted(p for p in folder.iterdir() if _is_image(p))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            p = Path(dirpath) / f
            if _is_image(p):
                found.append(p)
    return sorted(found)


def _scale_tag(scale: float) -> str | None:
    """'4' for 4 / 4.0; None for non-integer scales (no standard LR file names exist)."""
    s = float(scale)
    if abs(s - round(s)) < 1e-9 and s >= 1:
        return str(int(round(s)))
    return None


# --------------------------------------------------------------------------- datasets


class ImageDataset:
    """A sorted list of image files. ``ds[i]`` is the (3, H, W) float32 image in [0, 1].

    Attributes: ``root`` (Path), ``name`` (str), ``layout`` (str), ``paths`` (list[Path]),
    ``names`` (file stems).
    """

    layout = "flat"

    def __init__(
        self,
        root: str | os.PathLike,
        paths: Sequence[Path],
        name: str | None = None,
        max_images: int | None = None,
    ):
        self.root = Path(root)
        paths = list(paths)
        if max_images is not None:
            paths = paths[: max(0, int(max_images))]
        self.paths: list[Path] = paths
        if name is None:
            # ".../Set5/HR" is called Set5, not HR.
            name = (
                self.root.parent.name
                if self.root.name.upper() == "HR" and self.root.parent.name
                else self.root.name
            )
        self.name = name

    @property
    def names(self) -> list[str]:
        return [p.stem for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def read_uint8(self, i: int) -> torch.Tensor:
        """(3, H, W) uint8 RGB of image i."""
        return read_rgb_uint8(self.paths[i])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.read_uint8(i).to(torch.float32) / 255.0

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self[i]

    def lr_path(self, i: int, scale: float) -> Path | None:
        """Path of a ready-made LR file for image i at ``scale``, or None."""
        return None

    def pairs(self, scale: float, lr_source: str = "auto") -> SRPairs:
        return SRPairs(self, scale, lr_source=lr_source)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)})"


class FlatImageFolder(ImageDataset):
    """All images under ``root`` (recursively, sorted by path)."""

    layout = "flat"

    def __init__(
        self,
        root: str | os.PathLike,
        exts: Sequence[str] | None = None,
        max_images: int | None = None,
    ):
        root = Path(root)
        paths = _list_images(root, recursive=True)
        if exts is not None:
            allowed = {e.lower() if e.startswith(".") else "." + e.lower() for e in exts}
            paths = [p for p in paths if p.suffix.lower() in allowed]
        super().__init__(root, paths, max_images=max_images)


class KodakImages(ImageDataset):
    """Kodak: ``kodim*.png`` in ``root`` (any ``*.png`` when none is named so)."""

    layout = "kodak"

    def __init__(self, root: str | os.PathLike, max_images: int | None = None):
        root = Path(root)
        paths = sorted(p for p in root.glob("kodim*.png") if p.is_file())
        if not paths:
            paths = sorted(p for p in root.glob("*.png") if p.is_file())
        super().__init__(root, paths, max_images=max_images)


class _LRFolderMixin:
    """LR files named ``<lr_root>/X<s>/<name>x<s>.<ext>`` (EDSR and DIV2K naming)."""

    lr_root: Path | None

    def lr_path(self, i: int, scale: float) -> Path | None:  # type: ignore[override]
        tag = _scale_tag(scale)
        if self.lr_root is None or tag is None:
            return None
        folder = self.lr_root / f"X{tag}"
        stem = self.paths[i].stem  # type: ignore[attr-defined]
        for ext in (self.paths[i].suffix, ".png"):  # type: ignore[attr-defined]
            cand = folder / f"{stem}x{tag}{ext}"
            if cand.is_file():
                return cand
        return None


class BenchmarkImages(_LRFolderMixin, ImageDataset):
    """EDSR benchmark layout: ``HR/`` plus optional ``LR_bicubic/X<s>/<name>x<s>.png``."""

    layout = "benchmark"

    def __init__(self, root: str | os.PathLike, max_images: int | None = None):
        root = Path(root)
        hr = root / "HR"
        if not hr.is_dir():
            raise UserInputError(f"not a benchmark folder (no HR/ inside): {root}")
        paths = _list_images(hr, recursive=False)
        lr = root / "LR_bicubic"
        self.lr_root = lr if lr.is_dir() else None
        super().__init__(root, paths, max_images=max_images)


class DIV2KImages(_LRFolderMixin, ImageDataset):
    """DIV2K: ``DIV2K_<split>_HR/*.png`` with ``DIV2K_<split>_LR_bicubic/X<s>/<name>x<s>.png``.

    ``split`` None picks "valid" when present (the SR test split), else "train". ``root`` may also
    be the ``DIV2K_<split>_HR`` folder itself; a root with only PNGs is used as is.
    """

    layout = "div2k"

    def __init__(
        self, root: str | os.PathLike, split: str | None = None, max_images: int | None = None
    ):
        root = Path(root)
        m = re.fullmatch(r"DIV2K_(train|valid)_HR", root.name)
        if m:
            hr, split, base = root, m.group(1), root.parent
        else:
            base = root
            for cand in [split] if split else ["valid", "train"]:
                if (base / f"DIV2K_{cand}_HR").is_dir():
                    hr, split = base / f"DIV2K_{cand}_HR", cand
                    break
            else:
                raise UserInputError(f"no DIV2K_valid_HR or DIV2K_train_HR folder in {root}")
        self.split = split
        lr = base / f"DIV2K_{split}_LR_bicubic"
        self.lr_root = lr if lr.is_dir() else None
        super().__init__(
            root, _list_images(hr, recursive=False), max_images=max_images, name=f"DIV2K_{split}"
        )


class DTDImages(ImageDataset):
    """Describable Textures: images listed in ``labels/<split><partition>.txt`` (else all JPEGs).

    ``root`` may be the folder holding ``dtd/dtd``, ``dtd`` or ``images/`` directly.
    """

    layout = "dtd"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        partition: int = 1,
        max_images: int | None = None,
    ):
        root = Path(root)
        base = _dtd_base(root)
        if base is None:
            raise UserInputError(f"not a DTD folder (no images/ directory found): {root}")
        listing = base / "labels" / f"{split}{int(partition)}.txt"
        if listing.is_file():
            rels = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
            paths = [base / "images" / r for r in rels]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise UserInputError(
                    f"{listing} names {len(missing)} missing images, e.g. {missing[0]}"
                )
        else:
            paths = _list_images(base / "images", recursive=True)
        self.split, self.partition = split, int(partition)
        super().__init__(
            root,
            paths,
            max_images=max_images,
            name=f"DTD_{split}{int(partition)}" if listing.is_file() else "DTD",
        )


def _dtd_base(root: Path) -> Path | None:
    for cand in (root / "dtd" / "dtd", root / "dtd", root):
        if (cand / "images").is_dir() and ((cand / "labels").is_dir() or cand.name == "dtd"):
            return cand
    return None


def open_dataset(path: str | os.PathLike, max_images: int | None = None) -> ImageDataset:
    """Open a dataset folder, detecting its layout (benchmark, div2k, dtd, kodak or flat).

    Raises :class:`gblsr.errors.UserInputError` for a missing folder or one without images.
    """
    root = Path(path)
    if not root.exists():
        raise UserInputError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise UserInputError(f"dataset must be a folder, got a file: {root}")
    ds: ImageDataset
    if (root / "HR").is_dir():
        ds = BenchmarkImages(root, max_images=max_images)
    elif re.fullmatch(r"DIV2K_(train|valid)_HR", root.name) or any(
        (root / f"DIV2K_{s}_HR").is_dir() for s in ("valid", "train")
    ):
        ds = DIV2KImages(root, max_images=max_images)
    elif _dtd_base(root) is not None:
        ds = DTDImages(root, max_images=max_images)
    elif any(p.is_file() for p in root.glob("kodim*.png")):
        ds = KodakImages(root, max_images=max_images)
    else:
        ds = FlatImageFolder(root, max_images=max_images)
    if len(ds) == 0:
        raise UserInputError(f"no images found in dataset folder {root}")
    return ds


# --------------------------------------------------------------------------- HR/LR pairs


class SRSample(NamedTuple):
    """One evaluation pair: ``hr`` (3, H, W) and ``lr`` (3, h, w), float32 in [0, 1] (8-bit values).

    ``lr_origin`` says where the LR came from: "file", "matlab", "pil" or "identity" (scale 1).
    """

    name: str
    hr: torch.Tensor
    lr: torch.Tensor
    lr_origin: str


def make_lr(
    hr_u8: torch.Tensor, scale: float, kernel: str = "matlab"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop an 8-bit HR image for ``scale`` and downscale it.

    hr_u8: (3, H, W) uint8. Returns (hr_crop, lr), both uint8: hr_crop is the top-left
    (round(h_lr s), round(w_lr s)) part with h_lr = floor(H / s + 1e-9), and lr is
    ``imresize(hr_crop, [h_lr w_lr])`` with MATLAB bicubic (kernel "matlab") or Pillow bicubic
    (kernel "pil"). Raises :class:`ImageTooSmallError` when h_lr or w_lr would be 0.
    """
    H, W = int(hr_u8.shape[-2]), int(hr_u8.shape[-1])
    h, w = lr_size_for_scale((H, W), scale)
    if h < 1 or w < 1:
        raise ImageTooSmallError(f"a {H}x{W} image is too small for x{scale:g}")
    Hc, Wc = hr_crop_for_scale((H, W), scale)
    crop = hr_u8[..., :Hc, :Wc]
    if kernel == "matlab":
        lr = imresize(crop, size=(h, w))
    elif kernel == "pil":
        lr = pil_bicubic(crop, size=(h, w))
    else:
        raise ValueError(f"unknown LR kernel {kernel!r}; use 'matlab' or 'pil'")
    return crop, lr


def _validate_scale(scale) -> float:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise UserInputError(f"scale must be a number, got {scale!r}") from None
    if not math.isfinite(s) or s < 1:
        raise UserInputError(f"scale must be a finite number >= 1, got {scale!r}")
    return s


class SRPairs:
    """Iterate (name, hr, lr, lr_origin) samples of a dataset at one scale; see the module doc.

    ``len(pairs)`` is the number of images. Images too small for the scale raise
    :class:`ImageTooSmallError` from :meth:`get`; iteration skips them (``skipped`` lists them).
    """

    def __init__(self, dataset: ImageDataset, scale: float, lr_source: str = "auto"):
        if lr_source not in LR_SOURCES:
            raise UserInputError(
                f"unknown LR source {lr_source!r}; use one of {', '.join(LR_SOURCES)}"
            )
        self.dataset = dataset
        self.scale = _validate_scale(scale)
        self.lr_source = lr_source
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, i: int) -> SRSample:
        ds, s = self.dataset, self.scale
        name = ds.paths[i].stem
        hr = ds.read_uint8(i)
        if s == 1.0:
            f = hr.to(torch.float32) / 255.0
            return SRSample(name, f, f.clone(), "identity")
        lr = origin = None
        if self.lr_source in ("auto", "liif"):
            lp = ds.lr_path(i, s)
            if lp is not None:
                lr = read_rgb_uint8(lp)
                k = int(round(s))
                h, w = int(lr.shape[-2]), int(lr.shape[-1])
                if h * k > hr.shape[-2] or w * k > hr.shape[-1]:
                    raise ImageError(
                        f"LR file {lp} ({w}x{h}) times {k} is larger than its HR image "
                        f"({hr.shape[-1]}x{hr.shape[-2]})"
                    )
                hr = hr[..., : h * k, : w * k]
                origin = "file"
        if lr is None:
            kernel = "pil" if self.lr_source in ("pil", "liif") else "matlab"
            hr, lr = make_lr(hr, s, kernel)
            origin = kernel
        return SRSample(name, hr.to(torch.float32) / 255.0, lr.to(torch.float32) / 255.0, origin)

    def __iter__(self) -> Iterator[SRSample]:
        self.skipped = []
        for i in range(len(self.dataset)):
            try:
                yield self.get(i)
            except ImageTooSmallError:
                self.skipped.append(self.dataset.paths[i].stem)
