"""Scene images: their size from the header, and their pixels as RGB uint8.

PIL's own decompression-bomb limit is a process-wide global (`Image.MAX_IMAGE_PIXELS`,
~89 Mpx warns, ~179 Mpx raises). We do not change it; we keep it out of the way instead:
the file header is read through the format's plugin class directly (`Image.open` is where
PIL checks), our own cap (`max_pixels`, the `--max-pixels` flag) is applied to that size,
and only then are the pixels decoded. PNG, JPEG and BMP decoding never check again, so a
scene under our cap always decodes. TIFF decoding does check again (TiffImagePlugin's
load_prepare): a TIFF above ~179 Mpx is refused with an InputError saying so, and one
between ~89 and ~179 Mpx decodes with a DecompressionBombWarning in the log.
"""

from __future__ import annotations

import io

import numpy as np
import pyspng
from PIL import BmpImagePlugin, Image, ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from samrs_ray.errors import InputError

# 40000 x 40000 pixels: above DOTA-v2's largest scenes (about 20000 x 20000), and already
# 4.8 GB as RGB uint8, which is about what one worker can hold.
DEFAULT_MAX_PIXELS = 40_000 * 40_000

# file signature -> plugin class; the signatures are those in each format's specification
_PLUGINS: tuple[tuple[bytes, type[ImageFile.ImageFile]], ...] = (
    (b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile),
    (b"\xff\xd8\xff", JpegImagePlugin.JpegImageFile),
    (b"II*\x00", TiffImagePlugin.TiffImageFile),
    (b"MM\x00*", TiffImagePlugin.TiffImageFile),
    (b"II+\x00", TiffImagePlugin.TiffImageFile),  # BigTIFF
    (b"MM\x00+", TiffImagePlugin.TiffImageFile),
    (b"BM", BmpImagePlugin.BmpImageFile),
)


def open_header(data: bytes, source: str) -> ImageFile.ImageFile:
    """A lazily decoded PIL image: header read, pixels not yet. Raises InputError naming the file."""
    for signature, plugin in _PLUGINS:
        if data.startswith(signature):
            try:
                image = plugin(io.BytesIO(data))
            except Exception as err:  # PIL raises SyntaxError, OSError, struct.error... for bad headers
                raise InputError(source, f"unreadable {plugin.format} header: {err}") from None
            if image.width <= 0 or image.height <= 0:
                raise InputError(source, f"image header says {image.width}x{image.height} pixels")
            return image
    if not data:
        raise InputError(source, "empty file (0 bytes): not an image")
    raise InputError(source, f"not a PNG, JPEG, TIFF or BMP image (file starts with {data[:8]!r})")


def image_size(data: bytes, source: str) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    with open_header(data, source) as image:
        return image.size


def check_pixel_cap(width: int, height: int, max_pixels: int, source: str) -> None:
    """Refuse a scene above the pixel cap, saying how to raise it."""
    pixels = width * height
    if pixels > max_pixels:
        raise InputError(
            source,
            f"scene is {width}x{height} = {pixels:,} pixels, above the cap of {max_pixels:,} "
            f"(it needs about {3 * pixels / 1e9:.1f} GB as RGB); if the workers have the memory, "
            f"raise the cap with --max-pixels {pixels}",
        )


def decode_image(data: bytes, source: str, max_pixels: int = DEFAULT_MAX_PIXELS, writable: bool = True) -> np.ndarray:
    """Scene pixels, (H, W, 3) uint8 RGB; read-only unless `writable`, which costs a second copy
    of the pixels at the peak (planning only cuts tiles out of a scene, so it passes False).

    Alpha is dropped (not blended); palette, grey and 1-bit images are expanded to RGB;
    16-bit and 32-bit grey are mapped linearly 0..65535 -> 0..255 (a fixed mapping rather
    than a per-scene stretch, so every tile of a scene sees the same values).
    """
    with open_header(data, source) as image:
        check_pixel_cap(image.width, image.height, max_pixels, source)
        try:
            if image.format == "PNG" and image.mode in ("RGB", "RGBA"):
                # libspng decodes straight into one numpy array, 1.5x faster than PIL, which holds
                # its own 4-byte-per-pixel image and a copy on the way out (bench/RESULTS.md)
                try:
                    return pyspng.load(data, format="RGB")
                except RuntimeError as err:
                    detail = str(err).removeprefix("pyspng: ")
                    problem = "image file is truncated" if "end of stream" in detail else "corrupt data"
                    raise InputError(source, f"cannot decode PNG image: {problem} (libspng: {detail})") from None
            image.load()
            return to_rgb(image, writable)
        except InputError:
            raise
        except Image.DecompressionBombError as err:
            raise InputError(source, f"PIL refused to decode this {image.format} scene: {err}") from None
        except Exception as err:  # truncated or corrupt data: OSError, SyntaxError, ValueError...
            raise InputError(source, f"cannot decode {image.format} image: {err}") from None


def to_rgb(image: Image.Image, writable: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 from a loaded PIL image of any mode."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        wide = np.asarray(image, dtype=np.float32)
        grey = np.rint(np.clip(wide, 0, 65535) / 257.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if not writable:  # a view of the one copy PIL hands out (its tobytes())
        return np.asarray(rgb, dtype=np.uint8)
    return np.array(rgb, dtype=np.uint8)  # a writable copy (torch.from_numpy wants one)
