"""Benchmark: the per-tile encode stage (outputs.encode_tile's work), before vs after issue 7.

One real 1024x1024 tile: the first window of DOTA P0004 (the job's planner and cutter, padded
with the DOTA preset's pad value) and the objects the window keeps. Two sets of masks for it:

  smooth    each object's quad filled (what a good SAM gives: solid blobs)
  speckled  each object's box filled with 50% random pixels (short runs, only in the box)
  noise     random-weight SAM's masks: 256x256 random logits upsampled bilinearly to the tile
            and thresholded at 0, as SAM upsamples its low-resolution masks; blobs of a few
            pixels over the whole tile (~100k runs per mask), so the box crop cannot help

Steps, seconds per tile (best of --repeats):

  unpack    packed bits -> (N, H, W) bool
  paint     the label map (both paint orders are checked, 'annotation' timed)
  rle       COCO counts string, area and box of every mask (instance_rows' work)
  png L / png P / png tile   the three PNGs

"before" is the code as it was (kept below, small): full-tile column-major ravel and run
lengths, the pure-Python counts loop, full-tile area/box/paint passes, an extra bool copy in
unpack, Pillow at zlib level 6 for every PNG. Every "after" result is checked equal to "before" (PNG
pixels; bytes too where the level is the same). Last, the tile PNG's time and size per zlib level
with Pillow, and with png.py's own writer.

    .venv/bin/python -m bench.encode
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageDraw

from samrs_ray.encoding import png
from samrs_ray.inputs.formats.dota import parse_dota
from samrs_ray.inputs.presets import IGNORE_ID, PRESETS
from samrs_ray.masks.backend import pack_masks, unpack_masks
from samrs_ray.planning.tiling import Window, cut_tile, objects_in_window
from tests.encoding.helpers import describe_mask, paint_label_map  # the library's crop-based calls, on whole masks

DOTA = Path(__file__).resolve().parents[2] / "shared" / "data" / "realsamples" / "dota"
SIZE = 1024
PAD = PRESETS["sota"].pad_value
PALETTE = list(PRESETS["sota"].palette)


# --- before: the code as it was ----------------------------------------------------------


def old_unpack(data: bytes, count: int, height: int, width: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * height * width)
    return bits.reshape(count, height, width).astype(bool)


def old_paint(masks: np.ndarray, class_ids: np.ndarray, order: str) -> np.ndarray:
    label = np.full(masks.shape[1:], IGNORE_ID, dtype=np.uint8)
    sequence = range(len(masks))
    if order == "area-desc":
        sequence = np.argsort(-masks.reshape(len(masks), -1).sum(axis=1), kind="stable")
    for i in sequence:
        label[masks[i].astype(bool, copy=False)] = class_ids[i]
    return label


def old_run_lengths(mask: np.ndarray) -> list[int]:
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    return [0] + counts if flat[0] else counts


def old_counts_to_string(counts: list[int]) -> str:
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def old_box(mask: np.ndarray) -> Optional[tuple[float, float, float, float]]:
    columns = np.flatnonzero(mask.any(axis=0))
    if columns.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(columns[0]), float(rows[0]), float(columns[-1] + 1), float(rows[-1] + 1))


def old_rle(masks: np.ndarray) -> list[tuple[str, int, object]]:
    return [(old_counts_to_string(old_run_lengths(m)), int(np.count_nonzero(m)), old_box(m)) for m in masks]


def new_rle(masks: np.ndarray) -> list[tuple[str, int, object]]:
    return [(s.counts, s.area, s.box) for s in map(describe_mask, masks)]


def old_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6, optimize=False)
    return buffer.getvalue()


def old_color_png(label: np.ndarray) -> bytes:
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[: len(PALETTE)] = PALETTE
    image = Image.fromarray(label, mode="P")
    image.putpalette(colours.ravel().tolist())
    return old_png(image)


# --- the tile -----------------------------------------------------------------------------


def real_tile() -> tuple[np.ndarray, list[tuple[float, ...]], np.ndarray]:
    """-> tile (1024, 1024, 3) uint8, the kept objects' quads (tile pixels), their class ids (N,)."""
    scene = np.asarray(Image.open(DOTA / "images" / "P0004.png").convert("RGB"))
    labels = parse_dota((DOTA / "labelTxt" / "P0004.txt").read_bytes(), "P0004.txt")
    window = Window(0, 0, SIZE, SIZE)
    kept = [a for _, a in objects_in_window(labels.annotations, window)]
    names = sorted({a.class_name for a in kept})
    quads = [a.polygon if a.polygon is not None else box_quad(a.hbox) for a in kept]
    return cut_tile(scene, window, PAD), quads, np.array([names.index(a.class_name) for a in kept])


def box_quad(hbox: tuple[float, float, float, float]) -> tuple[float, ...]:
    x0, y0, x1, y1 = hbox
    return (x0, y0, x1, y0, x1, y1, x0, y1)


def smooth_masks(quads: list[tuple[float, ...]]) -> np.ndarray:
    masks = np.zeros((len(quads), SIZE, SIZE), bool)
    for mask, quad in zip(masks, quads):
        canvas = Image.new("1", (SIZE, SIZE))
        ImageDraw.Draw(canvas).polygon(list(quad), fill=1)
        mask[...] = np.asarray(canvas)
    return masks


def speckled_masks(quads: list[tuple[float, ...]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((len(quads), SIZE, SIZE), bool)
    for mask, quad in zip(masks, quads):
        xs, ys = quad[0::2], quad[1::2]
        x0, y0 = int(min(xs)), int(min(ys))
        x1, y1 = int(np.ceil(max(xs))), int(np.ceil(max(ys)))
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.5
    return masks


def noise_masks(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, SIZE, SIZE), bool)
    for mask in masks:
        low = Image.fromarray(rng.standard_normal((256, 256)).astype(np.float32), mode="F")
        mask[...] = np.asarray(low.resize((SIZE, SIZE), Image.BILINEAR)) > 0
    return masks


# --- timing -------------------------------------------------------------------------------


def best(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def same_pixels(a: bytes, b: bytes) -> bool:
    return np.array_equal(np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(b))))


def compare(name: str, masks: np.ndarray, class_ids: np.ndarray, rgb: np.ndarray, repeats: int) -> None:
    n, h, w = masks.shape
    packed = pack_masks(masks)
    print(f"\n{name}: {n} masks, {h}x{w}, mean area {masks.reshape(n, -1).sum(1).mean():.0f} px")
    print(f"  {'step':<10} {'before s':>10} {'after s':>10} {'speed-up':>9}")
    steps: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("unpack", lambda: old_unpack(packed, n, h, w), lambda: unpack_masks(packed, n, h, w)),
        ("paint", lambda: old_paint(masks, class_ids, "annotation"),
         lambda: paint_label_map(masks, class_ids, "annotation")),
        ("rle", lambda: old_rle(masks), lambda: new_rle(masks)),
    ]
    label = paint_label_map(masks, class_ids)
    steps += [
        ("png L", lambda: old_png(Image.fromarray(label, mode="L")), lambda: png.label_pngs(label, None)[0]),
        ("png P", lambda: old_color_png(label), lambda: png.label_pngs(label, PALETTE)[1]),
        ("png tile", lambda: old_png(Image.fromarray(rgb, mode="RGB")), lambda: png.image_png(rgb)),
    ]
    total_before = total_after = 0.0
    for step, before, after in steps:
        t_before, r_before = best(before, repeats)
        t_after, r_after = best(after, repeats)
        if step.startswith("png"):
            assert same_pixels(r_before, r_after), step
            note = "same bytes" if r_before == r_after else f"same pixels, {len(r_after) / len(r_before) - 1:+.1%} size"
        else:
            equal = (all(a == b for a, b in zip(r_before, r_after)) if step == "rle"
                     else np.array_equal(r_before, r_after))
            assert equal, step
            note = "equal"
        total_before += t_before
        total_after += t_after
        print(f"  {step:<10} {t_before:10.4f} {t_after:10.4f} {t_before / t_after:8.1f}x  {note}")
    print(f"  {'total':<10} {total_before:10.4f} {total_after:10.4f} {total_before / total_after:8.1f}x")
    assert np.array_equal(old_paint(masks, class_ids, "area-desc"), paint_label_map(masks, class_ids, "area-desc"))


def png_levels(rgb: np.ndarray, repeats: int) -> None:
    print("\ntile PNG (RGB 1024x1024) with Pillow, by zlib level, and with png.py's writer:")
    results = {}
    for level in (1, 2, 3, 4, 6, 9):
        def encode() -> bytes:
            buffer = io.BytesIO()
            Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG", compress_level=level, optimize=False)
            return buffer.getvalue()
        seconds, data = best(encode, repeats)
        results[level] = (seconds, len(data))
    base_seconds, base_size = results[6]
    for level, (seconds, size) in results.items():
        print(f"  level {level}: {seconds:.4f} s  {size:>9,} bytes  {base_seconds / seconds:4.1f}x faster,"
              f" {size / base_size - 1:+6.1%} size vs level 6")
    seconds, data = best(lambda: png.image_png(rgb), repeats)
    pillow_1 = results[1]
    print(f"  png.image_png (up filter, libdeflate level {png.TILE_LEVEL}): {seconds:.4f} s  {len(data):>9,} bytes  "
          f"{pillow_1[0] / seconds:4.1f}x faster, {len(data) / pillow_1[1] - 1:+6.1%} size vs Pillow level 1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rgb, quads, class_ids = real_tile()
    print(f"tile: DOTA P0004 window (0, 0, {SIZE}, {SIZE}), {len(quads)} objects")
    compare("smooth (filled quads)", smooth_masks(quads), class_ids, rgb, args.repeats)
    compare("speckled (50% random in each box)", speckled_masks(quads), class_ids, rgb, args.repeats)
    compare("noise (random-weight SAM)", noise_masks(len(quads)), class_ids, rgb, args.repeats)
    png_levels(rgb, args.repeats)


if __name__ == "__main__":
    main()
