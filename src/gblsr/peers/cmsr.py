"""CMSR (controllable multi-scale rendering) for LM-LIIF and LM-LTE, as in HeZongyao/LMF @ 17e356e.

Above the largest training scale (x4) most pixels do not need the full render: CMSR renders a
pixel at a coarser scale d (then upsamples bilinearly) when the *modulation intensity* of its
latent (the mean |shift modulation|, :meth:`~gblsr.peers.lmf._LMF.mod_mean`) is low enough.

Scale-to-modulation (S2M) tables map a target scale S to a table {d: t}: pixels whose intensity is
at most t may be rendered at scale d. For a target scale s, the first table (in key order) with
key >= s is used, else the last; its entries with d < s define levels d_0 < d_1 < ... with
thresholds [0, t_0, t_1, ...] (plus the level s itself with threshold 1 when the last t < 1).
Level i renders the points of its grid (int(h d) x int(w d)) whose intensity (nearest latent)
lies in [thr_i, thr_{i+1}] (the first level: <= thr_1; the last: >= thr_i; edges inclusive). The
image is then merged coarse to fine: starting from the LR input, each non-empty level
bilinearly (border-padded) resamples the running image onto its grid and overwrites its rendered
points; the last level is resampled to the output pixels. Level d renders with cells
(2/qh, 2/qw) * max(d / 4, 1), on modulations made with the target's cell.

Official behaviour we keep by default, and the fixes we offer:
  * level grids are the LR pixel centres bilinearly interpolated to the level size (so the
    outermost rows and columns are clamped to the outermost LR centres), not the level's pixel
    centres; ``exact_grid=True`` uses the exact centres;
  * when the last level has no pixels, the official code returns a coarser, wrongly shaped
    image (test.py then fails); we finish the merge by resampling to the output pixels;
  * the official code handles one image at a time; we loop over the batch.

:func:`build_table` re-implements ``init_cmsr.py`` (see its docstring); :func:`save_tables`
writes tables in the official YAML layout.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserInputError
from ..geometry import make_coord
from ._common import AUTO, PeerRepresentation, denormalize, full_grid, render_chunks

__all__ = [
    "DEFAULT_MSE_THRESHOLD",
    "INITIAL_SCALES",
    "load_tables",
    "save_tables",
    "select_table",
    "render_cmsr",
    "update_table",
    "build_table",
    "build_table_file",
]

# init_cmsr.py's default threshold (MSE in the [-1, 1] range).
DEFAULT_MSE_THRESHOLD = 2e-5
# The decode scales a new table starts from (those <= its target scale), all at 1.
INITIAL_SCALES = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)
# Half-width of the intensity band init_cmsr tests around each sample value.
BAND = 0.001


def _number(v, what: str) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UserInputError(f"S2M table: {what} must be a number, got {v!r}")
    return v


def load_tables(src) -> dict:
    """S2M tables from a YAML file (the official layout) or an already loaded mapping.

    returns {target scale: {decode scale: threshold}} in the given order (the official code does
    not sort a loaded table).
    """
    if isinstance(src, (str, os.PathLike)):
        import yaml

        p = Path(src)
        if not p.is_file():
            raise UserInputError(f"CMSR table not found: {p}")
        try:
            src = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise UserInputError(f"cannot read CMSR table {p}: {str(e).splitlines()[0]}") from None
    if not isinstance(src, Mapping) or not src:
        raise UserInputError("a CMSR table must map target scales to {decode scale: threshold}")
    out = {}
    for key, table in src.items():
        if not isinstance(table, Mapping) or not table:
            raise UserInputError(f"S2M table {key!r} must map decode scales to thresholds")
        out[_number(key, "a target scale")] = {
            _number(s, "a decode scale"): _number(t, "a threshold") for s, t in table.items()
        }
    return out


def save_tables(tables: Mapping, path: str | os.PathLike) -> Path:
    """Write tables as init_cmsr.py does (PyYAML, keys sorted)."""
    import yaml

    from ..fileio import atomic_write

    plain = {k: dict(v) for k, v in tables.items()}
    text = yaml.dump(plain)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def select_table(tables: Mapping, scale: float) -> dict:
    """The first table whose key is >= scale, else the last."""
    for key, table in tables.items():
        if key >= scale:
            return table
    return list(tables.values())[-1]


def _levels(table: Mapping, scale: float) -> tuple[list[float], list[float]]:
    scales, thresholds = [], [0]
    for s, t in table.items():
        if s >= scale:
            break
        scales.append(s)
        thresholds.append(t)
    if thresholds[-1] < 1:
        scales.append(scale)
        thresholds.append(1)
    return scales, thresholds


def _sample(img: torch.Tensor, coord: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, C, h, w) sampled at (B, Q, 2) (y, x) -> (B, Q, C)."""
    kw = {"padding_mode": "border"} if mode == "bilinear" else {}
    out = F.grid_sample(img, coord.flip(-1).unsqueeze(1), mode=mode, align_corners=False, **kw)
    return out[:, :, 0, :].permute(0, 2, 1)


def _level_grid(h: int, w: int, qh: int, qw: int, exact: bool, dtype, device) -> torch.Tensor:
    if exact:
        return make_coord((qh, qw), dtype=dtype, device=device).unsqueeze(0)
    centres = make_coord((h, w), flatten=False, dtype=dtype, device=device)
    centres = centres.permute(2, 0, 1).unsqueeze(0)
    grid = F.interpolate(centres, size=(qh, qw), mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, qh * qw, 2)


def render_cmsr(
    model,
    rep: PeerRepresentation,
    H: int,
    W: int,
    tables: Mapping,
    tile_q: int | None,
    cell_clip=AUTO,
    exact_grid: bool = False,
) -> torch.Tensor:
    """One image (batch 1) rendered to (1, 3, H, W) in [0, 1] with CMSR (see the module doc)."""
    h, w = rep.size
    inp = rep.inp
    dtype, device = inp.dtype, inp.device
    factor = model.test_cell_factor(h, w, H, W, cell_clip)
    coord, cell = full_grid(1, H, W, factor, dtype, device)
    mods = model.modulations(rep, cell)
    intensity = model.mod_mean(mods)

    qn = H * W
    scale = math.sqrt(qn / h / w)
    scales, thr = _levels(select_table(tables, scale), scale)
    n_levels = len(thr) - 1
    first, last = 0, n_levels - 1
    levels, coords, cells = [], [], []
    for i in range(n_levels):
        d = scales[i]
        if d < 1:
            first += 1
            continue
        qh, qw = int(h * d), int(w * d)
        grid = _level_grid(h, w, qh, qw, exact_grid, dtype, device)
        if i in (first, last):
            mm = _sample(intensity, grid, "nearest").flatten()
            keep = mm >= thr[i] if i == last else mm <= thr[i + 1]
        else:
            lo, hi = thr[i], thr[i + 1]
            mid, r = (hi + lo) / 2, (hi - lo) / 2
            keep = _sample(torch.abs(intensity - mid), grid, "nearest").flatten() <= r
        idx = torch.where(keep)[0]
        levels.append((i, d, qh, qw, grid, idx))
        if idx.numel():
            coords.append(grid[0, idx].unsqueeze(0))
            c = torch.ones_like(coords[-1])
            c[..., 0] *= 2 / qh
            c[..., 1] *= 2 / qw
            cells.append(c * max(d / model.max_scale, 1))

    pred = None
    if coords:
        pred = render_chunks(
            lambda c, ce: model.query_modulated(rep, mods, c, ce),
            torch.cat(coords, dim=1),
            torch.cat(cells, dim=1),
            tile_q,
        )[0]

    ret, done, used = inp, False, 0
    for i, _, qh, qw, grid, idx in levels:
        n = idx.numel()
        if n == 0:
            continue  # the official merge skips empty levels without resampling
        ret = _sample(ret, grid, "bilinear").contiguous().view(qh * qw, -1)
        ret[idx] = pred[used : used + n]
        used += n
        if i < n_levels - 1:
            ret = ret.view(1, qh, qw, -1).permute(0, 3, 1, 2)
        else:
            if scales[-1] < scale and not (model._cmsr_check_raster and qh * qw == qn):
                ret = _sample(ret.view(1, qh, qw, -1).permute(0, 3, 1, 2), coord, "bilinear")
            ret = ret.reshape(1, qn, -1)
            done = True
    if not done:  # empty last level (official: returns the coarser image); finish the merge
        ret = _sample(ret, coord, "bilinear")
    return denormalize(ret).view(1, H, W, -1).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------------------
# Building tables (init_cmsr.py)


def _samples(model) -> list[float]:
    top = model.cmsr_sample_max
    return [0 + (top - 0) * i / 100 for i in range(101)]


@torch.no_grad()
def update_table(
    model,
    lr: torch.Tensor,
    scale: int,
    H: int,
    W: int,
    table: dict,
    mse_threshold: float = DEFAULT_MSE_THRESHOLD,
    trained_scale: float = 4,
    tile_q: int | None = None,
) -> dict:
    """One image's update of the table of integer target ``scale`` (init_cmsr's
    update_scale2mean), for an (H, W) target (the HR crop of the image).

    lr: (1, 3, h, w) in [0, 1]; table: {decode scale: threshold} for this target scale, updated
    in place and returned. The target is the model's own full render (cell clipped by
    max(scale / trained_scale, 1)); with S = sqrt(HW / hw), for each decode scale d below S in key
    order, the render at int(h d) x int(w d) (exact centres, unclipped cell) is upsampled
    bilinearly, and the intensity samples 0, 0.01, ..., 1 (LM-LTE: 0, 0.005, ..., 0.5) are walked
    in order: a sample passes when the MSE (in the [-1, 1] range) over the target pixels whose
    intensity is within 0.001 of it is <= the threshold (samples with no pixels are skipped);
    the walk stops at the first failure, passed samples are removed for later scales, and
    table[d] becomes min(table[d], last passed). Smaller keys are then lowered to keep the
    table monotone. Samples left over set table[S] to the largest of them.
    """
    if lr.shape[0] != 1:
        raise ValueError("CMSR tables are built from one image at a time")
    rep = model.encode(lr)
    h, w = rep.size
    S = math.sqrt(H * W / h / w)
    coord, cell = full_grid(1, H, W, 1, lr.dtype, lr.device)
    cell *= max(scale / trained_scale, 1)
    mods = model.modulations(rep, cell)

    def render(c: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
        return render_chunks(lambda a, b: model.query_modulated(rep, mods, a, b), c, ce, tile_q)

    target = render(coord, cell).reshape(H * W, -1)
    intensity = _sample(model.mod_mean(mods), coord, "nearest")
    samples = _samples(model)
    for s in list(table):
        if s >= S:
            break
        qh, qw = int(h * s), int(w * s)
        q_coord, q_cell = full_grid(1, qh, qw, 1, lr.dtype, lr.device)
        q_pred = render(q_coord, q_cell).view(1, qh, qw, -1).permute(0, 3, 1, 2)
        pred = _sample(q_pred, coord, "bilinear").reshape(H * W, -1)
        best = table[s]
        for mid in list(samples):
            idx = torch.where(torch.abs(intensity - mid).flatten() <= BAND)[0]
            if idx.numel() == 0:  # an empty band: MSE is NaN, the official walk moves on
                continue
            loss = F.mse_loss(pred[idx], target[idx])
            if loss <= float(mse_threshold):
                samples.remove(mid)
                best = mid
            else:
                break
        table[s] = best if best < table[s] else table[s]
        _monotone(table, s)
    if samples:
        table[S] = samples[-1]
        _monotone(table, S)
    return table


def _monotone(table: dict, upto) -> None:
    for k in table:
        if k < upto and table[k] > table[upto]:
            table[k] = table[upto]


def build_table(
    model,
    images: Iterable[torch.Tensor],
    scale: int,
    tables: dict | None = None,
    mse_threshold: float = DEFAULT_MSE_THRESHOLD,
    trained_scale: float = 4,
    tile_q: int | None = 30000,
    progress=None,
) -> dict:
    """init_cmsr.py for one integer target ``scale``: update ``tables[scale]`` over ``images``.

    images: HR images (3, H, W) uint8 (the official run: the 800 DIV2K training images). Each is
    cropped top-left to round(floor(n / s + 1e-9) * s) and shrunk with Pillow's bicubic filter,
    as LIIF's ``sr-implicit-downsampled`` wrapper does. A missing table starts as
    {d: 1 for d in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32) if d <= scale}. Returns all tables,
    sorted by key.
    """
    for name, v in (("mse_threshold", mse_threshold), ("trained_scale", trained_scale)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise UserInputError(f"{name} must be a positive finite number, got {v}")
    from ..data.resize import hr_crop_for_scale, lr_size_for_scale, pil_bicubic

    tables = dict(tables or {})
    if scale not in tables:
        tables[scale] = {s: 1 for s in INITIAL_SCALES if s <= scale}
    tables = {k: tables[k] for k in sorted(tables)}
    device = next(model.parameters()).device
    for n, hr in enumerate(images):
        size = tuple(int(v) for v in hr.shape[-2:])
        h, w = lr_size_for_scale(size, scale)
        Hc, Wc = hr_crop_for_scale(size, scale)
        if h < 1 or w < 1:
            continue
        lr = pil_bicubic(hr[:, :Hc, :Wc], size=(h, w)).float() / 255
        update_table(
            model,
            lr[None].to(device),
            scale,
            Hc,
            Wc,
            tables[scale],
            mse_threshold,
            trained_scale,
            tile_q,
        )
        if progress is not None:
            progress(n, tables[scale])
    return tables


def build_table_file(
    model,
    folders: Iterable[str | os.PathLike],
    scales: Iterable[int],
    path: str | os.PathLike,
    mse_threshold: float = DEFAULT_MSE_THRESHOLD,
    trained_scale: float = 4,
    max_images: int | None = None,
    on_scale=None,
) -> dict:
    """What ``gblsr cmsr`` does: :func:`build_table` for every scale over the HR images of
    ``folders`` (sorted by name, the first ``max_images`` of each), updating the YAML file
    ``path`` after each scale (its other tables are kept, as init_cmsr.py does).
    ``on_scale(scale, table)`` is called after each. Returns all tables."""
    from ..data.image_io import IMAGE_EXTENSIONS, read_rgb_uint8

    if getattr(model, "registry_name", None) not in ("lmliif", "lmlte"):
        raise UserInputError(
            f"{getattr(model, 'registry_name', type(model).__name__)} has no latent "
            "modulations; CMSR is for lmliif / lmlte"
        )
    if not mse_threshold > 0:
        raise UserInputError("the MSE threshold must be positive")
    files: list[Path] = []
    for folder in folders:
        d = Path(folder)
        if not d.is_dir():
            raise UserInputError(f"not a folder: {d}")
        found = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise UserInputError(f"no images in {d}")
        files += found[:max_images] if max_images else found
    path = Path(path)
    tables = load_tables(path) if path.exists() else {}
    for scale in scales:
        images = (read_rgb_uint8(p) for p in files)
        tables = build_table(
            model, images, scale, tables, mse_threshold=mse_threshold, trained_scale=trained_scale
        )
        save_tables(tables, path)
        if on_scale is not None:
            on_scale(scale, tables[scale])
    return tables
