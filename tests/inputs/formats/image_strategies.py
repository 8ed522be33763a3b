"""Hypothesis strategies for scene images (samrs_ray/inputs/images.py), and the contract of its checks.

Seeds are small valid PNG, JPEG, TIFF and BMP files in many modes (made here with Pillow) and
the smaller real sample scenes. Each is then mutated where the format keeps what the checks
read: the declared width and height (0, 1, huge), bit depth, colour type, compression, strip
offsets, with the PNG header's CRC recomputed so the change gets past it; and at the byte
level: truncation, flipped, inserted or deleted bytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from samrs_ray.errors import InputError
from samrs_ray.inputs.images import _PLUGINS, decode_image, image_size
from tests.inputs.formats.strategies import REALSAMPLES, check_error, mutated

# the real scenes small enough to decode thousands of times (P0004, 1.2 Mpx, is left out)
REAL_IMAGES = ("mmrotate_fixtures/1.x/dota/images/P2805__1024__0___0.png",
               "mmrotate_fixtures/main/images/P0004__1__0___0.png",
               "dota/images/P1888.png", "dior/JPEGImages-trainval/00001.jpg")
SIZES = st.one_of(st.sampled_from((0, 1, 2, 7, 255, 256, 1000, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1)),
                  st.integers(0, 2 ** 32 - 1))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@lru_cache(maxsize=None)
def seeds() -> tuple[bytes, ...]:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8))
    files = [encoded(rgb.convert(mode), "PNG") for mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16")]
    files.append(encoded(rgb, "PNG", optimize=True))
    files += [encoded(rgb.convert(mode), "JPEG") for mode in ("RGB", "L", "CMYK")]
    files.append(encoded(rgb, "JPEG", progressive=True))
    files += [encoded(rgb.convert(mode), "TIFF") for mode in ("RGB", "RGBA", "L", "1", "I;16", "F", "CMYK", "P")]
    files += [encoded(rgb, "TIFF", compression=c) for c in ("tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg")]
    files.append(encoded(rgb, "TIFF", big_tiff=True))
    files += [encoded(rgb.convert(mode), "BMP") for mode in ("RGB", "L", "P", "1")]
    if REALSAMPLES.is_dir():
        files += [(REALSAMPLES / name).read_bytes() for name in REAL_IMAGES if (REALSAMPLES / name).is_file()]
    return tuple(files)


def put(data: bytearray, at: int, fmt: str, value: int) -> None:
    """Write `value` (wrapped to the field's width) at `at`, if the field is inside the file."""
    size = struct.calcsize(fmt)
    if 0 <= at and at + size <= len(data):
        bits = 8 * size
        value %= 2 ** bits
        if fmt[-1].islower() and value >= 2 ** (bits - 1):  # signed field
            value -= 2 ** bits
        struct.pack_into(fmt, data, at, value)


def mutate_png(draw, data: bytearray) -> None:
    # IHDR data at 16: width, height (u32 BE), bit depth, colour type, compression, filter, interlace
    field = draw(st.sampled_from(((16, ">I"), (20, ">I"), (24, "B"), (25, "B"), (26, "B"), (27, "B"), (28, "B"))))
    put(data, field[0], field[1], draw(SIZES if field[1] == ">I" else st.integers(0, 255)))
    if draw(st.integers(0, 4)) and len(data) >= 33:  # mostly keep the CRC right, so PIL reads on
        put(data, 29, ">I", zlib.crc32(bytes(data[12:29])))


def mutate_jpeg(draw, data: bytearray) -> None:
    at = 2
    while at + 9 < len(data) and data[at] == 0xFF and data[at + 1] != 0xDA:  # segments up to the scan
        if data[at + 1] in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            # SOF: length, precision, height, width (u16 BE), component count
            field = draw(st.sampled_from(((4, "B"), (5, ">H"), (7, ">H"), (9, "B"))))
            put(data, at + field[0], field[1], draw(SIZES))
            return
        at += 2 + struct.unpack_from(">H", data, at + 2)[0]


def mutate_tiff(draw, data: bytearray) -> None:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        ifd = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
        count = struct.unpack_from(order + ("Q" if big else "H"), data, ifd)[0]
    except struct.error:
        return
    first, step = ifd + (8 if big else 2), (20 if big else 12)
    tags = {}
    for i in range(min(count, 64)):
        if first + i * step + 2 <= len(data):
            tags[struct.unpack_from(order + "H", data, first + i * step)[0]] = first + i * step
    if not tags:
        return
    # width, length, bits/sample, compression, photometric, strip offsets, samples/pixel, strip bytes
    wanted = [t for t in (256, 257, 258, 259, 262, 273, 277, 279) if t in tags]
    entry = tags[draw(st.sampled_from(wanted or sorted(tags)))]
    field = draw(st.sampled_from(("value", "value", "value", "type", "count")))
    at, fmt = {"type": (entry + 2, "H"), "count": (entry + 4, "Q" if big else "I"),
               "value": (entry + (12 if big else 8), "Q" if big else "I")}[field]
    if field == "value" and struct.unpack_from(order + "H", data, entry + 2)[0] == 3:  # SHORT: first 2 bytes
        fmt = "H"
    put(data, at, order + fmt, draw(SIZES | st.integers(0, 9)))


def mutate_bmp(draw, data: bytearray) -> None:
    # pixel offset, header size, width, height (i32: negative is top-down), planes, bits, compression, colours
    field = draw(st.sampled_from(((10, "<I"), (14, "<I"), (18, "<i"), (22, "<i"), (26, "<H"), (28, "<H"),
                                  (30, "<I"), (46, "<I"))))
    value = draw(SIZES | st.integers(-(2 ** 31), 0) | st.sampled_from((1, 4, 8, 16, 24, 32, 64)))
    put(data, field[0], field[1], value)


HEADER_MUTATIONS = {"PNG": mutate_png, "JPEG": mutate_jpeg, "TIFF": mutate_tiff, "BMP": mutate_bmp}


@st.composite
def images(draw) -> bytes:
    """A seed with its header fields changed, then mutated at the byte level; or random bytes
    behind a real signature."""
    if draw(st.integers(0, 9)) == 0:
        signature = draw(st.sampled_from([s for s, _ in _PLUGINS]))
        return signature + draw(st.binary(max_size=64))
    data = bytearray(draw(st.sampled_from(seeds())))
    plugin = next(p for s, p in _PLUGINS if data.startswith(s))
    for _ in range(draw(st.integers(0, 2))):
        HEADER_MUTATIONS[plugin.format](draw, data)
    return draw(mutated(bytes(data), max_steps=2))


def check_image(data: bytes, uri: str, max_pixels: int, writable: bool) -> str:
    """Header, then pixels; returns 'decoded', 'header only' (decoding refused) or 'InputError'.
    AssertionError, or any other exception, is a broken contract."""
    try:
        width, height = image_size(data, uri)
    except InputError as err:
        check_error(err, uri)
        return "InputError"
    assert type(width) is int and type(height) is int and width > 0 and height > 0, (width, height)
    try:
        pixels = decode_image(data, uri, max_pixels=max_pixels, writable=writable)
    except InputError as err:
        check_error(err, uri)
        return "header only"
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8, type(pixels)
    assert pixels.shape == (height, width, 3), f"{pixels.shape} from a {width}x{height} header"
    assert pixels.flags.writeable or not writable
    return "decoded"
