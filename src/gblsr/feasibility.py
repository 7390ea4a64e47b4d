"""Before any work: can an output of this size be written at all?

A requested output is refused, with one line that says what would fit, when

* the format cannot hold it (PNG: 2^31 - 1 pixels a side; JPEG 65500; WebP 16383);
* its working set cannot fit the memory budget (``--max-memory``). The budget is an honest
  bound: besides the render tiles it covers the planning arrays of the separable renderer (per
  output row and column), the full-width band being assembled and converted to 8 bits, and a
  resized alpha plane, which is held whole;
* the file cannot fit the free space of its folder, even at the best compression the format
  could reach.

:func:`reserved_bytes` is the part of the budget that is not the render tiles; the renderer
sizes its tiles within what is left, so the plan and the rendering agree.

Encoding comes first and is planned on its own (:func:`plan_encoder_tile`): its working set is
freed before rendering starts, so it may use the whole budget. When the encoder's estimated
working set for the whole input (``encoder_bytes_per_pixel`` x input pixels) exceeds
``--max-memory``, the input is encoded in tiles sized by ``encoder_tile_for_budget``. Like
rendering's budget, this excludes the model and the encoded map itself, which are held whole.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .encoder_tiles import encoder_bytes_per_pixel, encoder_tile_for_budget
from .errors import UserInputError

__all__ = [
    "FORMAT_MAX_SIDE",
    "reserved_bytes",
    "min_file_bytes",
    "check_image_output",
    "check_tensor_memory",
    "available_memory",
    "encoder_working_set",
    "plan_encoder_tile",
]

# Largest side, in pixels, of the formats gblsr writes.
FORMAT_MAX_SIDE = {"PNG": (1 << 31) - 1, "JPEG": 65500, "WEBP": 16383, "BMP": (1 << 31) - 1}

# Bytes of planning per output column and row (axis plans of the separable renderer and of the
# LIIF family's coordinate grids, measured at about 210 per column with the local ensemble).
PLAN_BYTES_PER_COLUMN = 256
PLAN_BYTES_PER_ROW = 16
# A full-width band row beyond the tile: float strip (12) and its 8-bit copy (4, or 8 with alpha).
BAND_BYTES_PER_COLUMN = 24
# A resized alpha plane: float (4) and 8 bits (1), plus the interpolation's temporary (4).
ALPHA_BYTES_PER_PIXEL = 9
# Render tiles need at least this much to make progress.
MIN_TILE_BYTES = 64 << 10
# Deflate's best ratio is about 1032:1: no PNG (or other compressed file) is smaller.
_BEST_COMPRESSION = 1032
_HEADER_BYTES = 64  # signature and header chunks of even the smallest image file
_UNCOMPRESSED = {"BMP", "PPM", "TIFF", "TGA", "SGI", "PCX", "DIB"}


def reserved_bytes(H: int, W: int, alpha: bool = False) -> int:
    """Working memory of an H x W render that is not its tiles: planning, band assembly, the
    alpha plane."""
    plan = PLAN_BYTES_PER_COLUMN * W + PLAN_BYTES_PER_ROW * H
    band = BAND_BYTES_PER_COLUMN * W
    return plan + band + (ALPHA_BYTES_PER_PIXEL * H * W if alpha else 0)


def min_file_bytes(H: int, W: int, channels: int, fmt: str) -> int:
    """The smallest file an H x W image can be in ``fmt``."""
    raw = H * (W * channels + 1)
    return _HEADER_BYTES + (raw if fmt in _UNCOMPRESSED else raw // _BEST_COMPRESSION)


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def _free_space(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def check_image_output(
    H: int,
    W: int,
    *,
    fmt: str,
    channels: int,
    alpha: bool,
    max_memory: int,
    path: str | os.PathLike,
    input_size: tuple[int, int] | None = None,
    scale: float | None = None,
    rendered: bool = True,
) -> None:
    """Raise a one-line UserInputError unless an H x W ``fmt`` image can be rendered within
    ``max_memory`` bytes and written to ``path``; the line says the largest size that fits
    (as a scale when the request was one)."""
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    free = _free_space(folder)

    def problem(h: int, w: int) -> str | None:
        limit = FORMAT_MAX_SIDE.get(fmt)
        if limit is not None and max(h, w) > limit:
            return f"{fmt} images are limited to {limit} pixels a side"
        # The renderer keeps a quarter of the budget for each band's conversion and compression;
        # formats other than PNG are also assembled whole before they are encoded.
        need = reserved_bytes(h, w, alpha) + MIN_TILE_BYTES
        if fmt != "PNG":
            need += h * w * channels
        if rendered and need > (3 * max_memory) // 4:
            return (
                f"it needs at least {_size(need * 4 // 3)} of working memory, over the "
                f"{_size(max_memory)} of --max-memory"
                + ("" if fmt == "PNG" else " (it is assembled whole; a .png is streamed)")
            )
        if free is not None and min_file_bytes(h, w, channels, fmt) > free:
            return (
                f"the file would take at least {_size(min_file_bytes(h, w, channels, fmt))}, "
                f"over the {_size(free)} free in {folder}"
            )
        return None

    why = problem(H, W)
    if why is None:
        return
    hint = _largest(H, W, problem, input_size, scale)
    raise UserInputError(f"cannot write a {H}x{W} {fmt} image: {why}; {hint}")


def _largest(
    H: int,
    W: int,
    problem: Callable[[int, int], str | None],
    input_size: tuple[int, int] | None,
    scale: float | None,
) -> str:
    """What fits, by bisection on a factor (the output grows with it, so fitting is monotone)."""
    if scale is not None and input_size is not None:
        h, w = input_size

        def dims(f: float) -> tuple[int, int]:
            return max(1, round(f * h)), max(1, round(f * w))

        lo, hi = 0.0, float(scale)
    else:
        h, w = H, W

        def dims(f: float) -> tuple[int, int]:
            return max(1, math.floor(f * H)), max(1, math.floor(f * W))

        lo, hi = 0.0, 1.0
    if problem(*dims(lo)) is not None:
        return "not even a 1x1 image fits; free memory or disk space, or raise --max-memory"
    for _ in range(60):
        mid = (lo + hi) / 2
        if problem(*dims(mid)) is None:
            lo = mid
        else:
            hi = mid
    fh, fw = dims(lo)
    if scale is not None and input_size is not None:
        return f"the largest scale that fits is {lo:.4g} ({fh}x{fw}); or raise --max-memory"
    return f"the largest size of this shape that fits is {fh}x{fw}; or raise --max-memory"


def available_memory(device) -> int | None:
    """Bytes free for new tensors on ``device`` (CUDA: free device memory; CPU: MemAvailable),
    or None when unknown."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except Exception:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_tensor_memory(
    what: str, nbytes: int, device, hint: str = "", size: tuple[int, int] | None = None
) -> None:
    """Refuse, before allocating, tensors of ``nbytes`` that cannot fit ``device``'s free
    memory. ``size`` (h, w): the input whose area ``nbytes`` grows with; the line then names
    the largest input of that shape that fits."""
    free = available_memory(device)
    if free is None or nbytes <= free:
        return
    if size is not None:
        f = math.sqrt(free / nbytes)
        h, w = max(1, math.floor(f * size[0])), max(1, math.floor(f * size[1]))
        hint = f"the largest input of this shape that fits is {h}x{w}" + (
            f"; {hint}" if hint else ""
        )
    raise UserInputError(
        f"{what} needs {_size(nbytes)}, over the {_size(free)} free on {device}"
        + (f"; {hint}" if hint else "")
    )


def encoder_working_set(encoder, h: int, w: int, tile: int | None = None, overlap: int = 0) -> int:
    """Estimated peak bytes of running ``encoder`` on an h x w input, whole (``tile`` None) or
    in ``tile`` x ``tile`` cores with ``overlap`` pixels of context (every tile input is then
    min(side, tile + 2 overlap) a side)."""
    if tile is not None:
        h, w = min(h, tile + 2 * overlap), min(w, tile + 2 * overlap)
    return encoder_bytes_per_pixel(encoder) * h * w


def plan_encoder_tile(
    encoder, h: int, w: int, max_memory: int, overlap: int
) -> tuple[int | None, str | None]:
    """(tile, note): tile None when the whole h x w input fits ``max_memory`` bytes of encoder
    working memory; otherwise the largest tile that fits (one window at least) and a one-line
    note saying why it was chosen."""
    whole = encoder_working_set(encoder, h, w)
    if whole <= max_memory:
        return None, None
    tile = encoder_tile_for_budget(encoder, max_memory, overlap=overlap)
    need = encoder_working_set(encoder, h, w, tile, overlap)
    note = (
        f"encoding the {h}x{w} input in tiles of {tile} px (overlap {overlap}): the encoder "
        f"needs about {_size(whole)} whole, over the {_size(max_memory)} of --max-memory"
        + ("" if need <= max_memory else f" (even one tile needs {_size(need)})")
        + "; --encoder-tile chooses the tile"
    )
    return tile, note
