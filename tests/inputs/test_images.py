"""Scene decoding on the real DOTA / DIOR / mmrotate images, and on broken or huge synthetic ones."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from samrs_ray.errors import InputError
from samrs_ray.inputs.images import DEFAULT_MAX_PIXELS, check_pixel_cap, decode_image, image_size

REAL_SIZES = {  # (width, height) from SOURCES.md
    "dota/images/P0004.png": (824, 1464),
    "dota/images/P1888.png": (712, 557),
    "dior/JPEGImages-trainval/00001.jpg": (800, 800),
    "mmrotate_fixtures/main/images/P0004__1__0___0.png": (285, 294),
    "mmrotate_fixtures/1.x/dota/images/P2805__1024__0___0.png": (170, 170),
}
RGBA_THUMBNAILS = ["mmrotate_fixtures/main/images/P0004__1__0___0.png",
                   "mmrotate_fixtures/1.x/dota/images/P2805__1024__0___0.png"]


@pytest.mark.parametrize("relative", sorted(REAL_SIZES))
def test_real_scenes_have_their_published_size(realsamples, relative):
    data = (realsamples / relative).read_bytes()
    width, height = REAL_SIZES[relative]
    assert image_size(data, relative) == (width, height)
    pixels = decode_image(data, relative)
    assert pixels.shape == (height, width, 3) and pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous and pixels.flags.writeable
    assert pixels.std() > 10  # a real photo, not a blank buffer


def test_p0004_pixels_match_pil(realsamples):
    data = (realsamples / "dota/images/P0004.png").read_bytes()
    with Image.open(io.BytesIO(data)) as reference:
        assert reference.mode == "RGB"
        np.testing.assert_array_equal(decode_image(data, "P0004.png"), np.asarray(reference))


@pytest.mark.parametrize("relative", RGBA_THUMBNAILS)
def test_rgba_thumbnails_decode_to_their_rgb_channels(realsamples, relative):
    data = (realsamples / relative).read_bytes()
    with Image.open(io.BytesIO(data)) as reference:
        assert reference.mode == "RGBA"
        rgba = np.asarray(reference)
    np.testing.assert_array_equal(decode_image(data, relative), rgba[:, :, :3])


def test_truncated_png_keeps_its_header_but_does_not_decode(realsamples):
    data = (realsamples / "dota/images/P1888.png").read_bytes()
    cut = data[: len(data) // 2]
    assert image_size(cut, "images/P1888.png") == (712, 557)
    with pytest.raises(InputError, match=r"^images/P1888\.png: cannot decode PNG image: .*truncated"):
        decode_image(cut, "images/P1888.png")


def test_truncated_jpeg_does_not_decode(realsamples):
    data = (realsamples / "dior/JPEGImages-trainval/00001.jpg").read_bytes()
    with pytest.raises(InputError, match=r"^00001\.jpg: cannot decode JPEG image"):
        decode_image(data[: len(data) // 3], "00001.jpg")


def test_header_cut_short_is_an_error(realsamples):
    data = (realsamples / "dota/images/P0004.png").read_bytes()
    with pytest.raises(InputError, match=r"^P0004\.png: unreadable PNG header"):
        image_size(data[:20], "P0004.png")


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file \\(0 bytes\\): not an image"),
    (b"not an image at all", "not a PNG, JPEG, TIFF or BMP image"),
    (b"%PDF-1.7\n" + b"\0" * 100, "not a PNG, JPEG, TIFF or BMP image"),
])
def test_non_image_bytes_are_an_error(data, reason):
    with pytest.raises(InputError, match=rf"^scenes/x\.png: {reason}"):
        decode_image(data, "scenes/x.png")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (RGB, 8 bit) but that holds one byte of pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0")) + png_chunk(b"IEND", b""))


def test_huge_scene_size_is_read_without_pil_bomb_error_and_refused_by_our_cap():
    data = png_header_only(30_000, 30_000)  # 900 Mpx: over PIL's own 2 x 89 Mpx limit
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))  # what we avoid
    assert image_size(data, "s3://bucket/big.png") == (30_000, 30_000)
    assert 30_000 * 30_000 < DEFAULT_MAX_PIXELS
    with pytest.raises(InputError) as caught:
        decode_image(data, "s3://bucket/big.png", max_pixels=100_000_000)
    message = str(caught.value)
    assert message.startswith("s3://bucket/big.png: scene is 30000x30000 = 900,000,000 pixels")
    assert "above the cap of 100,000,000" in message
    assert "--max-pixels 900000000" in message


def test_pixel_cap_applies_to_real_scenes(realsamples):
    data = (realsamples / "dota/images/P0004.png").read_bytes()
    with pytest.raises(InputError, match="--max-pixels 1206336"):
        decode_image(data, "P0004.png", max_pixels=824 * 1464 - 1)
    assert decode_image(data, "P0004.png", max_pixels=824 * 1464).shape == (1464, 824, 3)
    check_pixel_cap(824, 1464, 824 * 1464, "P0004.png")  # exactly at the cap is allowed


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_16_bit_grey_maps_linearly_to_8_bit(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    data = encode(image, "PNG")
    pixels = decode_image(data, "grey16.png")
    assert pixels.shape == (1, 3, 3)
    np.testing.assert_array_equal(pixels[0], [[0, 0, 0], [100, 100, 100], [255, 255, 255]])


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1", "CMYK"])
def test_other_modes_become_rgb(realsamples, mode):
    data = (realsamples / "dota/images/P1888.png").read_bytes()
    with Image.open(io.BytesIO(data)) as source:
        converted = source.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    pixels = decode_image(encode(converted, fmt), f"P1888_{mode}.{fmt.lower()}")
    assert pixels.shape == (557, 712, 3) and pixels.dtype == np.uint8
    if mode in ("L", "LA", "1"):  # grey: the three channels are equal
        assert (pixels[:, :, 0] == pixels[:, :, 2]).all()


@pytest.mark.parametrize("fmt", ["TIFF", "BMP"])
def test_tiff_and_bmp_scenes_decode_to_the_same_pixels(realsamples, fmt):
    data = (realsamples / "dota/images/P1888.png").read_bytes()
    with Image.open(io.BytesIO(data)) as source:
        reference = np.asarray(source.convert("RGB"))
        other = encode(source, fmt)
    assert image_size(other, f"P1888.{fmt.lower()}") == (712, 557)
    np.testing.assert_array_equal(decode_image(other, f"P1888.{fmt.lower()}"), reference)


def test_pil_bomb_limit_does_not_fire_under_our_cap():
    # 1-bit so PIL's buffer stays ~200 MB; 14000^2 = 196 Mpx is over PIL's 2 x 89 Mpx error limit
    ihdr = struct.pack(">IIBBBBB", 14_000, 14_000, 1, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0")) + png_chunk(b"IEND", b""))
    with pytest.raises(InputError) as caught:
        decode_image(data, "big1bit.png")
    # it got as far as decoding pixels: the file's own truncation is what stops it
    assert str(caught.value).startswith("big1bit.png: cannot decode PNG image")


def test_rgb_pngs_decode_to_the_pixels_pillow_reads(realsamples):
    """RGB(A) PNGs go through libspng (faster, one copy); the pixels are Pillow's, alpha dropped."""
    for scene in sorted((realsamples / "dota" / "images").glob("*.png")):
        expected = np.asarray(Image.open(scene).convert("RGB"))
        for writable in (True, False):
            assert np.array_equal(decode_image(scene.read_bytes(), scene.name, writable=writable), expected)
    rgba = np.random.default_rng(0).integers(0, 256, (30, 20, 4), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    assert np.array_equal(decode_image(buffer.getvalue(), "rgba.png"), rgba[..., :3])
