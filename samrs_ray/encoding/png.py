"""PNG bytes for label maps, their palette view, and tile pixels; and a label PNG read back.

A PNG is a signature and a few chunks; the pixels are one zlib stream (IDAT) of the scanlines,
each preceded by its filter type. We write that container here (the PNG specification, ISO/IEC
15948, sections 5 and 9) instead of going through Pillow, for two reasons measured in
bench/RESULTS.md ("Host work"):

- Speed with no larger files: one filter for every scanline, computed for the whole image at
  once in numpy, and the stream compressed by libdeflate (the `deflate` package). Tile pixels
  use filter 2 ("up": the byte minus the one above): at level 2, about twice as fast as Pillow
  at zlib level 1 with its per-row filter search, and a few percent smaller. Label maps are
  compressed with filter 0 (none) and with "up", and the smaller stream is kept: "up" suits
  smooth masks (a trained SAM's), "none" speckled ones (random weights), where "up" is 2.6x
  larger; both at level 6 still take a third of Pillow's time.
- One stream for two files: the grey label PNG and the palette colour PNG hold the same 8-bit
  indices, so their IDAT is the same bytes; only the header's colour type and the palette differ.

Same input, same bytes: no timestamps or other metadata, fixed filter and levels. (A different
libdeflate version may compress differently; files are never rewritten, layout.py, so that
only changes what new files look like, never their pixels.)

Reading a label PNG back (stats, the training reader) goes through Pillow: any PNG decoder
gives the same pixels.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Sequence

import deflate
import numpy as np
from PIL import Image

from samrs_ray.inputs.presets import IGNORE_ID

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, RGB, PALETTE = 0, 2, 3  # PNG colour types
NONE, UP = 0, 2  # PNG filter types: the bytes as they are; each byte minus the one above (zeros above row 0)

LABEL_LEVEL = 6  # label maps are flat regions: a higher level costs little
TILE_LEVEL = 2  # tile pixels: most of the encode stage's time; level 2 already beats Pillow's level 1


def chunk(kind: bytes, data: bytes) -> bytes:
    """length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def compressed_scanlines(pixels: np.ndarray, level: int, filter_type: int) -> bytes:
    """pixels (H, W) or (H, W, 3) uint8 -> the zlib stream of their scanlines, each filtered with
    `filter_type` (NONE or UP): IDAT's data."""
    rows = pixels.reshape(pixels.shape[0], -1)
    filtered = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = filter_type
    if filter_type == UP:
        filtered[0, 1:] = rows[0]
        np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG's does
    elif filter_type == NONE:
        filtered[:, 1:] = rows
    else:
        raise ValueError(f"filter type {filter_type} is not written here (NONE or UP)")
    return deflate.zlib_compress(filtered.tobytes(), level)


def png_file(height: int, width: int, colour_type: int, idat: bytes, palette: bytes = b"") -> bytes:
    """An 8-bit PNG from its compressed scanlines (and, for colour type PALETTE, its PLTE data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    plte = chunk(b"PLTE", palette) if palette else b""
    return SIGNATURE + chunk(b"IHDR", header) + plte + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def check_label(label: np.ndarray) -> None:
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label map must be (H, W) uint8, got {label.shape} {label.dtype}")


def palette_bytes(palette: Sequence[tuple[int, int, int]]) -> bytes:
    """Class i's colour at entry i, every other entry (unused ids, 255 = unlabeled) black; 256
    entries, so that every 8-bit index is a valid one."""
    if len(palette) > IGNORE_ID:
        raise ValueError(f"at most {IGNORE_ID} palette colours fit (id {IGNORE_ID} is unlabeled)")
    colours = np.zeros((256, 3), dtype=np.uint8)
    if len(palette):
        colours[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return colours.tobytes()


def label_pngs(label: np.ndarray, palette: Sequence[tuple[int, int, int]] | None) -> tuple[bytes, bytes | None]:
    """label (H, W) uint8 class ids -> (grey 'L' PNG, palette 'P' PNG or None without a palette),
    compressed once for both."""
    check_label(label)
    idat = min((compressed_scanlines(label, LABEL_LEVEL, f) for f in (UP, NONE)), key=len)
    grey = png_file(*label.shape, GREY, idat)
    return grey, None if palette is None else png_file(*label.shape, PALETTE, idat, palette_bytes(palette))


def image_png(rgb: np.ndarray) -> bytes:
    """rgb (H, W, 3) uint8 -> RGB PNG."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    return png_file(rgb.shape[0], rgb.shape[1], RGB, compressed_scanlines(rgb, TILE_LEVEL, UP))


def decode_label_png(data: bytes) -> np.ndarray:
    """A label PNG's bytes, grey or palette -> its (H, W) uint8 class ids (a writable array)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image)
