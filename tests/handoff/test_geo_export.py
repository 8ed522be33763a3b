"""The geo export's pieces: the label COG painted strip by strip, and the mask chosen per object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio")

from samrs_ray.handoff import geo_export  # noqa: E402
from samrs_ray.inputs.presets import IGNORE_ID  # noqa: E402
from tests.geodata import UTM33  # noqa: E402

TRANSFORM = (0.5, 0.0, 500000.0, 0.0, -0.5, 4500000.0)


def test_the_label_cog_painted_by_strips_equals_the_whole_raster_painted_at_once(monkeypatch, tmp_path: Path) -> None:
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    rng = np.random.default_rng(3)
    width, height = 700, 530
    painted = []
    for class_id in range(12):  # overlapping objects, many across a strip's edge, some at the scene's
        h, w = rng.integers(5, 200, 2)
        y, x = rng.integers(0, height - h), rng.integers(0, width - w)
        painted.append((class_id, int(x), int(y), rng.random((h, w)) < 0.7))
    whole = np.full((height, width), IGNORE_ID, np.uint8)
    for class_id, x, y, crop in painted:  # later wins an overlap
        whole[y:y + crop.shape[0], x:x + crop.shape[1]][crop] = class_id

    monkeypatch.setattr(geo_export, "STRIP_ROWS", 64)  # 9 strips, the last one short
    data = geo_export.label_cog(painted, width, height, UTM33, TRANSFORM)
    (tmp_path / "label.tif").write_bytes(data)
    assert cog_validate(str(tmp_path / "label.tif"))[0]
    with rasterio.open(tmp_path / "label.tif") as label:
        assert np.array_equal(label.read(1), whole)
        assert (label.crs, tuple(label.transform)[:6], label.nodata) == (UTM33, TRANSFORM, IGNORE_ID)
        assert label.overviews(1) and label.profile["compress"] == "deflate"


def test_each_object_takes_its_mask_from_the_tile_where_its_box_is_farthest_from_the_edge() -> None:
    tiles = [{"tile_id": "a", "width": 100, "height": 100}, {"tile_id": "b", "width": 100, "height": 100}]
    near_edge = {"prompt_box": [2, 40, 30, 60], "source_uri": "layer.gpkg", "source_line": 7}
    inside = {"prompt_box": [40, 40, 68, 60], "source_uri": "layer.gpkg", "source_line": 7}
    other = {"prompt_box": [10, 10, 20, 20], "source_uri": "layer.gpkg", "source_line": 8}
    chosen = geo_export.choose_masks(tiles, {"a": [near_edge, other], "b": [inside]})
    assert chosen[("layer.gpkg", 7)] == (tiles[1], inside) and chosen[("layer.gpkg", 8)] == (tiles[0], other)
