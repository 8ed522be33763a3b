"""Map features -> the scenes they fall on, as pixel annotations of each scene.

    features (any CRS) x scene footprints -> {scene: [(Annotation in scene pixels, class id)]} + issues

A layer may cover many scenes: each feature goes to every scene whose footprint it meets (a
spatial index over the footprints, in the layer's CRS), reprojected to that scene's CRS (pyproj)
and then to its pixels (the scene's inverse transform). An object across a scene's edge is kept
whole here and clipped by tiling, as DOTA objects partly outside their image are.

Prompts by geometry: a polygon gives its bounds as the H-Box and its minimum rotated rectangle
as the quad (so RH-Box and the R-Box mask work as for DOTA); an axis-aligned rectangle gives an
H-Box only; a point gives a point prompt. Needs the `geo` extra (pyproj).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional

import numpy as np
import shapely
from shapely.affinity import affine_transform
from shapely.geometry import Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from samrs_ray.inputs.annotation import Annotation, InputIssue, Quad, Stage
from samrs_ray.inputs.presets import Preset
from samrs_ray.inputs.rasters import RasterScene
from samrs_ray.inputs.vectors import Feature

# Points along each side of a scene's footprint before reprojection: a footprint's edges bend in
# another CRS (UTM to degrees), and 21 points keep the bend within a fraction of a pixel's worth.
DENSIFY = 21
# Half the side of the box a point feature stands in for in tiling (pixels): tiling keeps objects by
# area, and a point needs one.
POINT_HALF = 0.5

SceneObjects = dict[str, list[tuple[Annotation, int]]]


def assign_features(scenes: dict[str, RasterScene], features: list[Feature], preset: Preset
                    ) -> tuple[SceneObjects, list[InputIssue]]:
    """{scene name: [(Annotation in scene pixels, class id)]} in (layer, fid) order, and one
    InputIssue per feature of an unknown class or outside every scene."""
    from pyproj import CRS

    issues: list[InputIssue] = []
    known: list[tuple[Feature, int]] = []
    for feature in features:
        try:
            known.append((feature, preset.class_id(feature.class_name)))
        except KeyError:
            issues.append(InputIssue(feature.layer, f"class {feature.class_name!r} is not in preset {preset.name}",
                                     feature.fid, stage=Stage.READ))
    placed: SceneObjects = defaultdict(list)
    by_crs: dict[str, list[tuple[Feature, int]]] = defaultdict(list)
    for feature, class_id in known:
        by_crs[feature.crs].append((feature, class_id))
    names = sorted(scenes)
    for crs_text, group in by_crs.items():
        layer_crs = CRS.from_user_input(crs_text)
        footprints = [footprint_in(scenes[name], layer_crs) for name in names]
        tree = shapely.STRtree(footprints)
        geometries = [feature.geometry for feature, _ in group]
        hits: dict[int, list[int]] = defaultdict(list)
        for feature_index, scene_index in zip(*tree.query(geometries, predicate="intersects")):
            hits[int(feature_index)].append(int(scene_index))
        for index, (feature, class_id) in enumerate(group):
            landed = False
            for scene_index in sorted(hits.get(index, ())):
                name = names[scene_index]
                annotation = in_scene_pixels(feature, scenes[name], layer_crs)
                if annotation is not None:
                    placed[name].append((annotation, class_id))
                    landed = True
            if not landed:
                issues.append(InputIssue(feature.layer, "feature lies outside every scene (compared in the scenes' "
                                                        "CRS)", feature.fid, stage=Stage.READ))
    for objects in placed.values():
        objects.sort(key=lambda pair: (pair[0].layer or "", pair[0].line or 0))
    return dict(placed), issues


def footprint_in(scene: RasterScene, crs) -> BaseGeometry:
    """The scene's outline in `crs` (its pixel frame, densified, reprojected)."""
    from pyproj import CRS, Transformer

    frame = box(0, 0, scene.width, scene.height).segmentize(max(scene.width, scene.height) / (DENSIFY - 1))
    in_map = affine_transform(frame, gdal_order(scene.transform))
    scene_crs = CRS.from_user_input(scene.crs)
    if scene_crs == crs:
        return in_map
    to_layer = Transformer.from_crs(scene_crs, crs, always_xy=True)
    return shapely.transform(in_map, lambda xy: np.column_stack(to_layer.transform(xy[:, 0], xy[:, 1])))


def in_scene_pixels(feature: Feature, scene: RasterScene, layer_crs) -> Optional[Annotation]:
    """The feature as an Annotation in the scene's pixels; None when it only touches the scene."""
    from pyproj import CRS, Transformer

    geometry = feature.geometry
    scene_crs = CRS.from_user_input(scene.crs)
    if scene_crs != layer_crs:
        to_scene = Transformer.from_crs(layer_crs, scene_crs, always_xy=True)
        geometry = shapely.transform(geometry, lambda xy: np.column_stack(to_scene.transform(xy[:, 0], xy[:, 1])))
    pixels = affine_transform(geometry, inverse_gdal_order(scene.transform))
    frame = box(0, 0, scene.width, scene.height)
    if isinstance(pixels, Point):
        if not frame.contains(pixels):
            return None
        x, y = pixels.x, pixels.y
        return Annotation(feature.class_name, (x - POINT_HALF, y - POINT_HALF, x + POINT_HALF, y + POINT_HALF),
                          None, False, feature.layer, feature.fid, feature.layer, "point")
    if pixels.intersection(frame).area <= 0:
        return None
    bounds = pixels.bounds
    rectangle = box(*bounds)
    if abs(rectangle.area - pixels.area) <= 1e-6 * rectangle.area:  # an axis-aligned rectangle: an H-Box
        return Annotation(feature.class_name, bounds, None, False, feature.layer, feature.fid, feature.layer)
    return Annotation(feature.class_name, bounds, quad(pixels), False, feature.layer, feature.fid, feature.layer)


def quad(shape: BaseGeometry) -> Quad:
    """The minimum rotated rectangle's 4 corners, clockwise on screen as DOTA writes quads."""
    outline = orient(shape.minimum_rotated_rectangle, sign=1.0)
    if not isinstance(outline, Polygon):  # a sliver whose rectangle degenerates: its bounds
        outline = orient(box(*shape.bounds), sign=1.0)
    corners = list(outline.exterior.coords)[:4]
    return tuple(float(v) for corner in corners for v in corner)  # type: ignore[return-value]


def gdal_order(t: tuple[float, ...]) -> list[float]:
    """rasterio's (a, b, c, d, e, f) -> shapely's affine_transform [a, b, d, e, xoff, yoff]."""
    a, b, c, d, e, f = t
    return [a, b, d, e, c, f]


def inverse_gdal_order(t: tuple[float, ...]) -> list[float]:
    """The inverse of the pixel -> map transform, as shapely's affine_transform takes it."""
    a, b, c, d, e, f = t
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return [ia, ib, id_, ie, -(ia * c + ib * f), -(id_ * c + ie * f)]
