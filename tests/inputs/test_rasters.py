"""Raster scenes read by window: headers, bands, stretch, nodata, and the errors of bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio")

from samrs_ray.dataset.storage import READ_ATTEMPTS  # noqa: E402
from samrs_ray.errors import ConfigError, InputError, StoreError  # noqa: E402
from samrs_ray.inputs.rasters import (Stretch, open_raster, open_scene, read_scene, read_window,  # noqa: E402
                                      tile_transform)
from tests.faultproxy import NO_CLIENT_RETRIES, FaultProxy  # noqa: E402
from tests.geodata import ORIGIN, PIXEL, UTM33, write_band_files, write_raster  # noqa: E402
from tests.seaweed import S3Server  # noqa: E402

REAL = Path(__file__).parents[1] / "data" / "rasterio"
PAD = (104, 116, 124)


def test_a_cog_header_gives_size_crs_transform_and_rgb_bands(tmp_path: Path) -> None:
    scene = read_scene(str(write_raster(tmp_path / "a.tif", 300, 200, cog=True)), {})
    assert (scene.width, scene.height, scene.crs) == (300, 200, UTM33)
    assert scene.transform == (PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])
    assert scene.bands == (1, 2, 3) and scene.stretch.method == "none"


def test_a_window_reads_only_its_pixels_and_pads_past_the_edge(tmp_path: Path) -> None:
    import rasterio

    path = write_raster(tmp_path / "a.tif", 300, 200)
    scene = read_scene(str(path), {})
    with rasterio.open(path) as src:
        whole = src.read().transpose(1, 2, 0)
    with open_raster(str(path), {}) as src:
        rgb, nodata = read_window(src, scene, 250, 150, 100, 80, PAD)
    assert rgb.shape == (80, 100, 3) and nodata is None
    assert np.array_equal(rgb[:50, :50], whole[150:200, 250:300])
    assert (rgb[50:, :] == PAD).all() and (rgb[:, 50:] == PAD).all()


def test_single_band_files_stacked_read_as_the_rgb_raster_they_came_from(tmp_path: Path) -> None:
    rgb = write_raster(tmp_path / "rgb.tif", 300, 200, cog=True)
    bands = tuple(str(p) for p in write_band_files(rgb, tmp_path))
    whole, stacked = read_scene(str(rgb), {}), read_scene(bands[0], {}, band_uris=bands)
    assert (stacked.width, stacked.height, stacked.crs, stacked.transform) == (300, 200, UTM33, whole.transform)
    assert stacked.bands == (1, 2, 3) and stacked.band_uris == bands and stacked.uri == bands[0]
    with open_scene(whole, {}) as a, open_scene(stacked, {}) as b:
        assert np.array_equal(read_window(a, whole, 250, 150, 100, 80, PAD)[0],
                              read_window(b, stacked, 250, 150, 100, 80, PAD)[0])
    # a band on another grid is the band file's error
    other = write_raster(tmp_path / "shifted.tif", 300, 200, origin=(ORIGIN[0] + 10, ORIGIN[1]), count=1)
    with pytest.raises(InputError, match="shifted.tif: this band's grid"):
        read_scene(bands[0], {}, band_uris=(bands[0], bands[1], str(other)))


def test_16_bit_data_is_stretched_once_per_scene_by_percentiles(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "wide.tif", 256, 256, dtype="uint16")
    scene = read_scene(str(path), {})
    assert str(scene.stretch) == "percentile:2,98" and len(scene.stretch.low) == 3
    with open_raster(str(path), {}) as src:
        rgb, _ = read_window(src, scene, 0, 0, 256, 256, PAD)
    # 2..98 percentiles map to 0..255: about 2% of pixels at each end of every band
    for band in range(3):
        assert 0.005 < (rgb[..., band] == 0).mean() < 0.05 and 0.005 < (rgb[..., band] == 255).mean() < 0.05
    import rasterio

    with rasterio.open(path) as src:
        red = src.read(1)
    fixed = read_scene(str(path), {}, stretch=Stretch.parse("minmax"))  # from a 1 Mpx sample: this whole scene
    assert (fixed.stretch.low[0], fixed.stretch.high[0]) == (red.min(), red.max())


def test_stretch_spellings_are_checked() -> None:
    assert str(Stretch.parse("percentile:1,99")) == "percentile:1,99"
    assert Stretch.parse(None) is None
    for bad in ("percentile:99,1", "gamma", "percentile:2"):
        with pytest.raises(ConfigError, match="--stretch"):
            Stretch.parse(bad)


def test_four_bands_pick_red_green_blue_by_colour_interpretation_and_alpha_is_nodata() -> None:
    scene = read_scene(str(REAL / "RGBA.uint16.tif"), {})  # rasterio's sample: blue, green, red, alpha
    assert scene.bands == (3, 2, 1) and scene.dtype == "uint16"
    with open_raster(scene.uri, {}) as src:
        _, nodata = read_window(src, scene, 0, 0, scene.width, scene.height, PAD)
        alpha = src.read(4)
    assert nodata is not None and np.array_equal(nodata, alpha == 0)


def test_declared_nodata_is_masked_and_padded(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nd.tif", 200, 200, nodata=0)
    scene = read_scene(str(path), {})
    with open_raster(str(path), {}) as src:
        rgb, nodata = read_window(src, scene, 0, 0, 100, 100, PAD)
    assert nodata is not None and nodata[:50, :50].all() and not nodata[60:, 60:].any()
    assert (rgb[:50, :50] == PAD).all()


def test_a_real_landsat_sample_and_gdals_byte_sample_read() -> None:
    landsat = read_scene(str(REAL / "rgb-byte-tenth.tif"), {})
    assert (landsat.width, landsat.height, landsat.bands) == (79, 71, (1, 2, 3)) and "UTM" in landsat.crs
    grey = read_scene(str(REAL / "byte.tif"), {})
    assert grey.bands == (1, 1, 1) and grey.crs == "EPSG:26711"


def test_a_band_that_does_not_exist_names_the_flag(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "a.tif", 64, 64)
    with pytest.raises(InputError, match=r"--bands 4,3,2: the raster has bands 1..3, not 4"):
        read_scene(str(path), {}, bands=(4, 3, 2))


def test_a_truncated_tiff_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "cut.tif", 512, 512)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError) as caught:
        scene = read_scene(str(path), {})
        with open_raster(str(path), {}) as src:
            read_window(src, scene, 0, 0, 512, 512, PAD)
    assert caught.value.source == str(path)


def test_tile_transform_moves_the_origin_by_the_window() -> None:
    t = (0.5, 0.0, 100.0, 0.0, -0.5, 200.0)
    assert tile_transform(t, 10, 20) == (0.5, 0.0, 105.0, 0.0, -0.5, 190.0)


def test_a_store_that_refuses_a_rasters_reads_is_retried_then_a_store_error(s3: S3Server, tmp_path: Path) -> None:
    """A read the store fails (after the client's own retries) is asked again, READ_ATTEMPTS
    times in all, then is a StoreError; a refusal that passes costs nothing. (A failed read once
    aborted the process: rasterio turns an exception in its read callback into -1 bytes read.)"""
    import rasterio

    path = write_raster(tmp_path / "a.tif", 1024, 1024, cog=True)
    with rasterio.open(path) as src:
        whole = src.read().transpose(1, 2, 0)
    uri = s3.uri("raster-store-error/a.tif")
    s3.filesystem().put_file(str(path), uri.removeprefix("s3://"))
    proxy = FaultProxy(s3)
    with proxy as faulty:
        options = {**faulty.storage_options, **NO_CLIENT_RETRIES}
        scene = read_scene(uri, options)
        with open_raster(uri, options) as src:
            proxy.target("GET", "*/raster-store-error/a.tif", "slow_down")
            with pytest.raises(StoreError) as caught:
                read_window(src, scene, 0, 0, 1024, 1024, PAD)
            refused = proxy.injected["slow_down"]
            proxy.clear_targets()
            proxy.target("GET", "*/raster-store-error/a.tif", "slow_down", times=refused // READ_ATTEMPTS + 1)
            rgb, _ = read_window(src, scene, 0, 0, 1024, 1024, PAD)
    assert (caught.value.uri, caught.value.attempts) == (uri, READ_ATTEMPTS)
    assert "reduce your request rate" in str(caught.value)
    # one retry chain of s3fs's per try (it asks a throttled GET 10 times)
    assert READ_ATTEMPTS <= refused <= 10 * READ_ATTEMPTS
    assert np.array_equal(rgb, whole)


def test_a_store_that_refuses_to_say_a_rasters_size_is_a_store_error_not_a_bad_file(
        s3: S3Server, tmp_path: Path) -> None:
    uri = s3.uri("raster-head-refused/a.tif")
    s3.filesystem().put_file(str(write_raster(tmp_path / "a.tif", 256, 256)), uri.removeprefix("s3://"))
    proxy = FaultProxy(s3)
    proxy.target("HEAD", "*/raster-head-refused/a.tif", "internal_error")
    with proxy as faulty, pytest.raises(StoreError) as caught:
        read_scene(uri, {**faulty.storage_options, **NO_CLIENT_RETRIES})
    assert caught.value.uri == uri and caught.value.attempts == READ_ATTEMPTS
