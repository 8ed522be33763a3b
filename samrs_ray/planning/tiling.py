"""Sliding windows over a scene, the objects each window keeps, and the tile pixels it cuts.

Windows follow DOTA_devkit's ImgSplit (and BboxToolkit's get_sliding_window, which gives
the same windows): stride = size - gap, the last window in each direction shifted back so
it ends at the border, and a scene smaller than `size` gets one size x size window at (0, 0)
that is padded. An object belongs to a window when area(object ∩ window) / area(object)
>= iof_thr ("intersection over foreground", 0.7 in SAMRS).

All coordinates are pixels, x right, y down; a window covers [x0, x0 + width) x [y0, y0 + height).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import shapely
from shapely.affinity import translate
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, Box, Quad


@dataclass(frozen=True)
class Window:
    """One tile's place in its scene (scene pixels). It may extend past a small scene."""

    x0: int
    y0: int
    width: int
    height: int

    @property
    def x1(self) -> int:
        return self.x0 + self.width

    @property
    def y1(self) -> int:
        return self.y0 + self.height


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets along one axis: 0, stride, 2*stride, ..., the last one ending at `length`."""
    if length <= size:
        return [0]
    count = -(-(length - size) // stride) + 1  # ceil((length - size) / stride) + 1
    starts = [stride * i for i in range(count)]
    starts[-1] = length - size
    return starts


def plan_windows(scene_w: int, scene_h: int, size: Optional[int], gap: int) -> list[Window]:
    """All windows of a scene, x-major (column by column) as DOTA_devkit writes them.

    size None: one window, the whole scene (SIOR uses its 800x800 images as they are).
    """
    if scene_w <= 0 or scene_h <= 0:
        raise ValueError(f"scene size must be positive, got {scene_w}x{scene_h}")
    if size is None:
        return [Window(0, 0, scene_w, scene_h)]
    if size <= 0 or not 0 <= gap < size:
        raise ValueError(f"tiling needs size > gap >= 0, got size={size} gap={gap}")
    stride = size - gap
    return [
        Window(x0, y0, size, size)
        for x0 in window_starts(scene_w, size, stride)
        for y0 in window_starts(scene_h, size, stride)
    ]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_NAME = 160  # leaves room for '__1024__x___y.png' within a 255-byte file name


def safe_scene_name(scene_name: str) -> str:
    """`scene_name` as a single safe path component: [A-Za-z0-9._-] only, no '..', no leading '.'.

    A name that had to change gets a short hash of the original appended, so two scenes
    whose names differ only in unsafe characters ('a b', 'a_b') never share a tile id.
    """
    if not scene_name:
        raise ValueError("scene name is empty")
    safe = _UNSAFE.sub("_", scene_name)
    safe = re.sub(r"\.{2,}", "_", safe)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if safe != scene_name or len(safe) > MAX_NAME:
        digest = hashlib.sha256(scene_name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe[:MAX_NAME]}_{digest}"
    return safe


def tile_id(scene_name: str, size: Optional[int], window: Window) -> str:
    """DOTA_devkit-style id, e.g. 'P0004__1024__0___824' (scene, size, x0, y0); size None: the scene name."""
    name = safe_scene_name(scene_name)
    if size is None:
        return name
    return f"{name}__{size}__{window.x0}___{window.y0}"


TILE_ID = re.compile(r"(?P<scene>.+)__\d+__\d+___\d+")


def scene_of(tile: str) -> str:
    """The (safe) scene name a tile id starts with: tile_id's inverse; an untiled tile's id is its scene's."""
    match = TILE_ID.fullmatch(tile)
    return match["scene"] if match else tile


def object_shape(annotation: Annotation) -> BaseGeometry:
    """The object's outline as a valid shapely geometry: its polygon, else its box."""
    if annotation.polygon is not None:
        p = annotation.polygon
        shape = Polygon([(p[0], p[1]), (p[2], p[3]), (p[4], p[5]), (p[6], p[7])])
        if not shape.is_valid:  # readers refuse these; keep tiling total for other callers
            shape = shapely.make_valid(shape)
    else:
        shape = box(*annotation.hbox)
    if shape.area <= 0:
        raise InputError(annotation.source, "object has zero area and cannot be tiled", annotation.line)
    return shape


def objects_in_window(
    annotations: Sequence[Annotation], window: Window, iof_thr: float = 0.7
) -> list[tuple[int, Annotation]]:
    """(index in `annotations`, tile-relative Annotation) for every object the window keeps.

    Kept: area(object ∩ window) / area(object) >= iof_thr. An object wholly inside keeps its
    corners as they are (shifted). A cut one is clipped: its 4 corners when the cut leaves a
    quadrilateral, else the minimum rotated rectangle of the cut, clamped to the tile; its
    hbox is the bounds of the cut. Every coordinate ends in [0, width] x [0, height].
    Raises InputError (naming the object's file and line) for a zero-area object.
    """
    kept: list[tuple[int, Annotation]] = []
    wx0, wy0, wx1, wy1 = window.x0, window.y0, window.x1, window.y1
    frame: Optional[BaseGeometry] = None
    for index, annotation in enumerate(annotations):
        x0, y0, x1, y1 = annotation.hbox
        if x0 >= wx0 and y0 >= wy0 and x1 <= wx1 and y1 <= wy1:
            kept.append((index, shifted(annotation, window)))  # the common case: no geometry
            continue
        if x1 <= wx0 or y1 <= wy0 or x0 >= wx1 or y0 >= wy1:
            continue  # disjoint (or only touching)
        frame = frame if frame is not None else box(wx0, wy0, wx1, wy1)
        shape = object_shape(annotation)
        cut = shape.intersection(frame)
        if cut.area / shape.area >= iof_thr:
            kept.append((index, clipped(annotation, cut, window)))
    return kept


def shifted(annotation: Annotation, window: Window) -> Annotation:
    dx, dy = window.x0, window.y0
    x0, y0, x1, y1 = annotation.hbox
    polygon = None
    if annotation.polygon is not None:
        polygon = tuple(v - (dx if i % 2 == 0 else dy) for i, v in enumerate(annotation.polygon))
    return dataclasses.replace(annotation, hbox=(x0 - dx, y0 - dy, x1 - dx, y1 - dy), polygon=polygon)


def clipped(annotation: Annotation, cut: BaseGeometry, window: Window) -> Annotation:
    """The part of `annotation` inside `window` (`cut`, scene pixels), in tile pixels."""
    local = translate(cut, -window.x0, -window.y0)
    bx0, by0, bx1, by1 = local.bounds
    hbox: Box = (clamp(bx0, window.width), clamp(by0, window.height),
                 clamp(bx1, window.width), clamp(by1, window.height))
    if annotation.polygon is None:
        return dataclasses.replace(annotation, hbox=hbox)
    return dataclasses.replace(annotation, hbox=hbox, polygon=quad_of(local, window))


def quad_of(shape: BaseGeometry, window: Window) -> Quad:
    """Four corners for a clipped outline, clamped to the tile and oriented like DOTA quads.

    orient(sign=1) gives a positive shoelace sum, which is clockwise on screen (y down),
    the order every DOTA quad is written in.
    """
    outline = shape.simplify(0) if isinstance(shape, Polygon) else None  # drops collinear points
    if outline is None or outline.is_empty or len(outline.exterior.coords) != 5:
        outline = shape.minimum_rotated_rectangle
    outline = orient(outline, sign=1.0)
    corners = list(outline.exterior.coords)[:4]
    if len(corners) < 4:  # a cut reduced to a line or point: its box's corners
        bx0, by0, bx1, by1 = shape.bounds
        corners = [(bx0, by0), (bx1, by0), (bx1, by1), (bx0, by1)]
    quad: list[float] = []
    for x, y in corners:
        quad += [clamp(x, window.width), clamp(y, window.height)]
    return tuple(quad)  # type: ignore[return-value]


def clamp(value: float, limit: int) -> float:
    return float(min(max(value, 0.0), float(limit)))


def cut_tile(scene: np.ndarray, window: Window, pad_value: tuple[int, int, int]) -> np.ndarray:
    """scene (H, W, 3) uint8 -> tile (window.height, window.width, 3) uint8.

    Copies only the window's pixels (never the scene); where the window leaves the scene
    the tile is filled with `pad_value` (per channel), on the right and bottom.
    """
    if scene.ndim != 3 or scene.shape[2] != 3 or scene.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 scene, got {scene.shape} {scene.dtype}")
    height, width = scene.shape[:2]
    if window.x0 < 0 or window.y0 < 0 or window.x0 >= width or window.y0 >= height:
        raise ValueError(f"window {window} does not start inside the {width}x{height} scene")
    if len(pad_value) != 3 or not all(0 <= v <= 255 for v in pad_value):
        raise ValueError(f"pad_value must be 3 values in 0..255, got {pad_value}")
    inside = scene[window.y0:window.y1, window.x0:window.x1]  # a view: no copy yet
    if inside.shape[:2] == (window.height, window.width):
        return inside.copy()
    tile = np.empty((window.height, window.width, 3), dtype=np.uint8)
    height, width = inside.shape[:2]
    tile[:height, :width] = inside
    # only the padding is filled, from one padded row: broadcasting the 3-value pattern over
    # every pixel was a third of planning's time
    pad_row = np.tile(np.asarray(pad_value, dtype=np.uint8), window.width)  # (width * 3,) bytes
    rows = tile.reshape(window.height, window.width * 3)
    rows[:height, width * 3:] = pad_row[width * 3:]
    rows[height:] = pad_row
    return tile
