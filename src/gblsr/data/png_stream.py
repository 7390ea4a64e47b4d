"""Writing a PNG a band of rows at a time, so an image never has to exist whole in memory.

Pillow encodes PNGs from a complete image only. This writer emits the signature and header,
then one or more IDAT chunks per band of rows (each row prefixed with filter type 0, the whole
stream compressed by one ``zlib.compressobj``), then IEND. The result is an ordinary 8-bit RGB
or RGBA PNG that any decoder reads.

    with open(tmp, "wb") as f:
        png = PNGStreamWriter(f, width=w, height=h, channels=3)
        for band in bands:                 # (rows, w, 3) uint8 arrays, top to bottom
            png.write_rows(band)
        png.close()

:func:`write_png_streamed` wraps this in the atomic temporary-file-and-rename of
:func:`gblsr.data.image_io.atomic_write`, so a failure part-way leaves no partial file.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["PNGStreamWriter", "write_png_streamed", "PNG_MAX_SIDE"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The PNG specification limits width and height to 2^31 - 1.
PNG_MAX_SIDE = 2**31 - 1
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey+alpha, RGB, RGBA
# Compressed data is flushed to the file in chunks of at most this many bytes.
_IDAT_MAX = 1 << 24


class PNGStreamWriter:
    """Incremental 8-bit PNG encoder (non-interlaced, filter type 0 on every row)."""

    def __init__(
        self,
        fileobj: BinaryIO,
        width: int,
        height: int,
        channels: int = 3,
        compress_level: int = 6,
    ):
        if channels not in _COLOR_TYPE:
            raise ValueError(f"channels must be 1, 2, 3 or 4, got {channels}")
        if not (1 <= width <= PNG_MAX_SIDE and 1 <= height <= PNG_MAX_SIDE):
            raise ValueError(f"PNG size must be within 1..{PNG_MAX_SIDE}, got {width}x{height}")
        self.f = fileobj
        self.width, self.height, self.channels = int(width), int(height), int(channels)
        self.rows_written = 0
        self._z = zlib.compressobj(compress_level)
        self._closed = False
        self.f.write(_SIGNATURE)
        ihdr = struct.pack(">IIBBBBB", self.width, self.height, 8, _COLOR_TYPE[channels], 0, 0, 0)
        self._chunk(b"IHDR", ihdr)

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self.f.write(struct.pack(">I", len(data)))
        self.f.write(kind)
        self.f.write(data)
        self.f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))

    def _idat(self, data: bytes) -> None:
        for i in range(0, len(data), _IDAT_MAX):
            self._chunk(b"IDAT", data[i : i + _IDAT_MAX])

    def write_rows(self, rows: np.ndarray) -> None:
        """Append rows: a (n, width, channels) (or (n, width) for grey) uint8 array."""
        if self._closed:
            raise ValueError("the PNG is already closed")
        arr = np.asarray(rows)
        if arr.ndim == 2 and self.channels == 1:
            arr = arr[..., None]
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (self.width, self.channels):
            raise ValueError(
                f"rows must be uint8 (n, {self.width}, {self.channels}), got {arr.dtype} "
                f"{tuple(arr.shape)}"
            )
        n = arr.shape[0]
        if self.rows_written + n > self.height:
            raise ValueError(f"more than the {self.height} rows declared in the header")
        raw = np.zeros((n, 1 + self.width * self.channels), dtype=np.uint8)  # filter byte 0
        raw[:, 1:] = arr.reshape(n, -1)
        data = self._z.compress(raw.tobytes())
        if data:
            self._idat(data)
        self.rows_written += n

    def close(self) -> None:
        """Finish the stream; raises if fewer rows than declared were written."""
        if self._closed:
            return
        if self.rows_written != self.height:
            raise ValueError(f"wrote {self.rows_written} of the {self.height} declared rows")
        self._idat(self._z.flush())
        self._chunk(b"IEND", b"")
        self._closed = True


def write_png_streamed(
    path: str | os.PathLike,
    width: int,
    height: int,
    channels: int,
    bands: Iterable[np.ndarray],
    compress_level: int = 6,
) -> Path:
    """Write the uint8 bands (top to bottom; (rows, width, channels) each) as one PNG, through a
    temporary file renamed into place at the end."""
    from ..fileio import atomic_write

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            png = PNGStreamWriter(f, width, height, channels, compress_level)
            for band in bands:
                png.write_rows(band)
            png.close()

    return atomic_write(path, _write)
