"""Training datasets: native patch crops and the arbitrary-scale sampler. Image sources are
:mod:`gblsr.data.sources`, randomness and batch order :mod:`gblsr.data.sampling` (re-exported).

Native experiments (the reference's schema) cut fixed-size patches from a pool of images
(:class:`PatchCropDataset`, built by :func:`build_datasets` from a :class:`DataConfig`).
Arbitrary-scale SR training follows LIIF's protocol (:class:`SRImplicitDownsampled`): per
sample a scale s ~ U(scale_min, scale_max), a square HR crop of round(inp_size * s) pixels, its
bicubic LR of inp_size pixels, random flips / transpose, and ``sample_q`` HR pixels with their
coordinates and cells.

Randomness is a pure function of (seed, epoch, sample index): every crop, scale, flip and query
subset is drawn from a generator seeded with exactly those numbers, and the sample order of an
epoch from (seed, epoch). So crops differ across epochs and seeds, results do not depend on
the number of loader workers, a resumed run sees exactly the batches the uninterrupted run
would have seen, and data-parallel ranks split each global batch without coordination
(:class:`ResumableBatchSampler`).

Image folders may be given as ``builtin:samples``: the handful of photos shipped inside the
package (see ``gblsr/assets/README.md``), so a run needs no download.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserInputError
from .image_io import read_rgb_uint8
from .sampling import (
    ResumableBatchSampler,
    augment,
    batch_scale,
    batch_step,
    sample_rng,
    split_key,
)
from .sources import (
    BUILTIN_SAMPLES,
    LR_KERNELS,
    DataConfig,
    ImageSource,
    builtin_samples_dir,
    open_training_images,
    resolve_image_dir,
    split_train_val,
)

__all__ = [
    "DataConfig",
    "BUILTIN_SAMPLES",
    "builtin_samples_dir",
    "resolve_image_dir",
    "ImageSource",
    "open_training_images",
    "split_train_val",
    "PatchCropDataset",
    "build_datasets",
    "collate",
    "collate_with_meta",
    "varres_collate",
    "make_collate",
    "SRImplicitDownsampled",
    "LR_KERNELS",
    "ResumableBatchSampler",
    "sample_rng",
]


# --------------------------------------------------------------------------- native crops


class PatchCropDataset(Dataset):
    """Fixed-size patches (or whole images) for native GB-LSR experiments.

    sources: ``(name, paths)`` pairs. Items are ``(x (3, S, S) float [0, 1], source name, path,
    meta)``; meta holds ``filename``, ``dataset``, ``original_h``, ``original_w``, ``path``.

    * Images smaller than S on a side are first upscaled (Pillow bicubic) so the short side
      covers S, as in the reference.
    * ``train=True``: a random S x S crop per (seed, run_seed, epoch, index), plus random
      flips / transpose with ``augment``. ``train=False``: the centre crop.
    * ``image_size=None`` or ``resize_policy="original"``: the whole image, unresized.
    """

    def __init__(
        self,
        sources: Sequence[tuple[str, Sequence[Path]]],
        image_size: int | None,
        train: bool,
        seed: int = 0,
        resize_policy: str = "center_crop_or_upsample_to_size",
        augment: bool = False,
        run_seed: int = 0,
    ):
        self.items: list[tuple[str, Path]] = [(n, Path(p)) for n, ps in sources for p in ps]
        self.image_size = image_size
        self.train = train
        self.seed = int(seed)
        self.run_seed = int(run_seed)
        self.varres = image_size is None or resize_policy == "original"
        self.augment = augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        epoch, idx = split_key(key)
        name, path = self.items[idx]
        img = read_rgb_uint8(path)
        H, W = int(img.shape[-2]), int(img.shape[-1])
        meta = {
            "filename": path.name,
            "dataset": name,
            "original_h": H,
            "original_w": W,
            "path": str(path),
        }
        rng = sample_rng(self.seed, self.run_seed, epoch, idx) if self.train else None
        if not self.varres:
            img = self._crop(img, int(self.image_size), rng)
        x = img.to(torch.float32) / 255.0
        if self.train and self.augment and rng is not None:
            (x,) = augment([x], rng)
        return x, name, str(path), meta

    @staticmethod
    def _crop(img: torch.Tensor, size: int, rng: np.random.Generator | None) -> torch.Tensor:
        from .resize import pil_bicubic

        H, W = int(img.shape[-2]), int(img.shape[-1])
        if H < size or W < size:
            s = max(size / W, size / H)
            img = pil_bicubic(img, size=(max(int(H * s) + 1, size), max(int(W * s) + 1, size)))
            H, W = int(img.shape[-2]), int(img.shape[-1])
        if rng is None:
            y, x = (H - size) // 2, (W - size) // 2
        else:
            y = int(rng.integers(0, H - size + 1))
            x = int(rng.integers(0, W - size + 1))
        return img[:, y : y + size, x : x + size]


def _interleave(sources: Sequence[tuple[str, list[Path]]]) -> list[tuple[str, list[Path]]]:
    """Round-robin over sources, so the first k validation images cover every source."""
    queues = [(n, list(ps)) for n, ps in sources]
    out: list[tuple[str, list[Path]]] = []
    while any(ps for _, ps in queues):
        for n, ps in queues:
            if ps:
                out.append((n, [ps.pop(0)]))
    return out


def build_datasets(cfg: DataConfig, run_seed: int = 0) -> tuple[PatchCropDataset, PatchCropDataset]:
    """(train, val) patch datasets from every configured source.

    Each source is split on its own with ``cfg.seed`` (so all runs of an experiment share the
    split); validation images are interleaved across sources. When no image is left for
    validation, the training images are used (centre crops).
    """
    train_src, val_src = [], []
    for name, paths in open_training_images(cfg):
        tr, va = split_train_val(paths, cfg.val_fraction, cfg.seed)
        if tr:
            train_src.append((name, tr))
        if va:
            val_src.append((name, va))
    if not train_src:
        raise UserInputError("every training image went to validation; lower data.val_fraction")
    if not val_src:
        val_src = [(n, list(ps)) for n, ps in train_src]
    kw = dict(image_size=cfg.image_size, seed=cfg.seed, resize_policy=cfg.resize_policy)
    train = PatchCropDataset(train_src, train=True, augment=cfg.augment, run_seed=run_seed, **kw)
    val = PatchCropDataset(_interleave(val_src), train=False, **kw)
    return train, val


def collate(batch):
    """Fixed-size items -> ``(x (B, 3, S, S), names, paths)``."""
    x = torch.stack([b[0] for b in batch])
    return x, [b[1] for b in batch], [b[2] for b in batch]


def collate_with_meta(batch):
    """Fixed-size items -> ``(x, names, paths, metas)``."""
    return (*collate(batch), [b[3] for b in batch])


def varres_collate(batch):
    """Whole images of any size: exactly one item per batch -> ``(x (1, 3, H, W), names,
    paths, metas)``."""
    if len(batch) != 1:
        raise NotImplementedError(
            "variable-resolution batches hold one image (images differ in size); set batch_size: 1"
        )
    return collate_with_meta(batch)


def make_collate(varres: bool):
    return varres_collate if varres else collate_with_meta


# --------------------------------------------------------------------------- arbitrary-scale SR


def _to_coord_axis(n: int) -> torch.Tensor:
    from ..geometry import axis_centres

    return axis_centres(n)


class SRImplicitDownsampled(Dataset):
    """LIIF's arbitrary-scale training samples from HR images.

    Per sample (all draws from ``sample_rng(seed, epoch, index)``):

    1. s ~ U(scale_min, scale_max).
    2. With ``inp_size``: a square HR crop of w = round(inp_size * s) pixels at a uniform
       position, and its LR = bicubic resize of the 8-bit crop to inp_size x inp_size
       (``lr_kernel`` "pil": Pillow, as LIIF/LTE; "matlab": :func:`gblsr.data.imresize`, as the
       benchmark LR files). Images smaller than w on a side give the largest crop they hold (a
       smaller effective scale). Without ``inp_size``: the whole image, LR size floor(H / s),
       HR cropped to round(h_lr * s) at the top-left.
    3. ``augment``: row flip, column flip, transpose, each with p = 0.5 (LIIF's order).
    4. ``sample_q`` HR pixels without replacement (all pixels when None).

    ``scale_per_batch``: step 1's s is drawn once per global batch instead
    (:func:`~gblsr.data.sampling.batch_scale` of (seed, step); keys must then be
    ``(epoch, index, step)``, from a sampler with ``step_in_key``). The per-sample draw is still
    made and discarded, so all other draws (crop position, flips, queries) are unchanged, and a
    fixed scale (scale_min = scale_max) gives exactly the per-sample samples. With ``inp_size``
    every HR crop of a batch then has the same size, so whole crops (``sample_q=None``) collate.

    Items are dicts: ``inp`` (3, h, w), ``coord`` (Q, 2) cell-centre (y, x) in [-1, 1],
    ``cell`` (Q, 2) = (2 / H_hr, 2 / W_hr), ``gt`` (Q, 3), all float32 in [0, 1].
    ``len`` is ``len(source) * repeat``; index i uses image ``i % len(source)``.
    """

    def __init__(
        self,
        source: ImageSource,
        inp_size: int | None = 48,
        scale_min: float = 1.0,
        scale_max: float | None = 4.0,
        augment: bool = True,
        sample_q: int | None = 2304,
        lr_kernel: str = "pil",
        repeat: int = 1,
        seed: int = 0,
        scale_per_batch: bool = False,
    ):
        if lr_kernel not in LR_KERNELS:
            raise UserInputError(f"unknown lr_kernel {lr_kernel!r}; use one of {LR_KERNELS}")
        scale_max = scale_min if scale_max is None else scale_max
        if not (1.0 <= float(scale_min) <= float(scale_max)):
            raise UserInputError(f"need 1 <= scale_min <= scale_max, got {scale_min}, {scale_max}")
        if inp_size is not None and int(inp_size) < 1:
            raise UserInputError(f"inp_size must be positive, got {inp_size}")
        if sample_q is not None and int(sample_q) < 1:
            raise UserInputError(f"sample_q must be positive, got {sample_q}")
        if int(repeat) < 1:
            raise UserInputError(f"repeat must be >= 1, got {repeat}")
        if inp_size is not None and sample_q is not None and sample_q > inp_size * inp_size:
            # The smallest HR crop (s = 1) has inp_size^2 pixels.
            raise UserInputError(
                f"sample_q={sample_q} exceeds the {inp_size}x{inp_size} pixels of an x1 crop"
            )
        self.source = source
        self.inp_size = None if inp_size is None else int(inp_size)
        self.scale_min = float(scale_min)
        self.scale_max = float(scale_max)
        self.augment = bool(augment)
        self.sample_q = None if sample_q is None else int(sample_q)
        self.lr_kernel = lr_kernel
        self.repeat = int(repeat)
        self.seed = int(seed)
        self.scale_per_batch = bool(scale_per_batch)

    def __len__(self) -> int:
        return len(self.source) * self.repeat

    def _resize(self, hr_u8: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        from .resize import imresize, pil_bicubic

        if self.lr_kernel == "pil":
            return pil_bicubic(hr_u8, size=size)
        return imresize(hr_u8, size=size)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, idx = split_key(key)
        img = self.source.read(idx % len(self.source))
        rng = sample_rng(self.seed, epoch, idx)
        s = float(rng.uniform(self.scale_min, self.scale_max))
        if self.scale_per_batch:
            step = batch_step(key)
            if step is None:
                raise UserInputError(
                    "scale_per_batch needs (epoch, index, step) keys: use a "
                    "ResumableBatchSampler with step_in_key=True"
                )
            s = batch_scale(self.seed, step, self.scale_min, self.scale_max)
        H, W = int(img.shape[-2]), int(img.shape[-1])
        if self.inp_size is not None:
            n = self.inp_size
            w_hr = min(int(round(n * s)), H, W)
            if w_hr < n:
                raise UserInputError(
                    f"training image {self.source.paths[idx % len(self.source)]} ({W}x{H}) is "
                    f"smaller than the {n}x{n} LR patch"
                )
            y0 = int(rng.integers(0, H - w_hr + 1))
            x0 = int(rng.integers(0, W - w_hr + 1))
            hr_u8 = img[:, y0 : y0 + w_hr, x0 : x0 + w_hr]
            lr_u8 = self._resize(hr_u8, (n, n))
        else:
            h_lr, w_lr = math.floor(H / s + 1e-9), math.floor(W / s + 1e-9)
            if h_lr < 1 or w_lr < 1:
                raise UserInputError(f"training image ({W}x{H}) is too small for scale {s:g}")
            hr_u8 = img[:, : round(h_lr * s), : round(w_lr * s)]
            lr_u8 = self._resize(hr_u8, (h_lr, w_lr))
        hr = hr_u8.to(torch.float32) / 255.0
        lr = lr_u8.to(torch.float32) / 255.0
        if self.augment:
            hr, lr = augment([hr, lr], rng)
        Hh, Wh = int(hr.shape[-2]), int(hr.shape[-1])
        ys, xs = _to_coord_axis(Hh), _to_coord_axis(Wh)
        n_pix = Hh * Wh
        if self.sample_q is not None:
            if self.sample_q > n_pix:
                raise UserInputError(
                    f"sample_q={self.sample_q} exceeds the {Hh}x{Wh} pixels of an HR crop"
                )
            pick = torch.from_numpy(rng.choice(n_pix, self.sample_q, replace=False))
        else:
            pick = torch.arange(n_pix)
        row, col = pick // Wh, pick % Wh
        coord = torch.stack([ys[row], xs[col]], dim=-1)
        gt = hr[:, row, col].t().contiguous()
        cell = torch.empty_like(coord)
        cell[:, 0] = 2.0 / Hh
        cell[:, 1] = 2.0 / Wh
        return {"inp": lr, "coord": coord, "cell": cell, "gt": gt}
