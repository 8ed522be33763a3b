"""TorchGeo on a map run's outputs: the scenes, and the label COGs `samrs-ray export --format geo`
writes for them, as TorchGeo `RasterDataset`s. The label COG of a scene has the scene's CRS,
transform and size, so the two intersect pixel for pixel.

    from torch.utils.data import DataLoader
    from torchgeo.datasets import stack_samples
    from torchgeo.samplers import RandomGeoSampler

    pairs = samrs_ray.SceneRasters("s3://.../scenes") & samrs_ray.LabelRasters("geo/")  # IntersectionDataset
    loader = DataLoader(pairs, sampler=RandomGeoSampler(pairs, size=512, length=1000), batch_size=8,
                        collate_fn=stack_samples)
    batch["image"]    (B, C, 512, 512) float32: the scenes' values as they are (uint8 for RGB scenes)
    batch["mask"]     (B, 512, 512) int64: class ids (the preset's order), 255 = no object or no scene

TorchGeo reads local paths and GDAL's own URIs (/vsis3/...); 0.8.1 is the newest release on
Python 3.11 (0.9 and 0.10 need Python 3.12). Needs the torchgeo extra.
"""

from __future__ import annotations

from torchgeo.datasets import RasterDataset

from samrs_ray.inputs.presets import IGNORE_ID


class SceneRasters(RasterDataset):
    """A map run's scenes (`--images`: GeoTIFFs or COGs, `*.tif`): sample['image'] is (C, H, W)
    float32, the rasters' values unscaled. `bands=[...]` picks bands by name when `all_bands` is set
    in a subclass; the default is every band."""

    filename_glob = "*.tif"
    is_image = True


class LabelRasters(RasterDataset):
    """The label COGs of `samrs-ray export --format geo` (`<dest>/<scene>.tif`): sample['mask'] is
    (H, W) int64, each pixel its class id, `ignore_index` where no object is and outside every scene
    (the COGs' nodata, which TorchGeo's merge fills in)."""

    filename_glob = "*.tif"
    is_image = False
    ignore_index = IGNORE_ID  # for the loss: torch.nn.functional.cross_entropy(..., ignore_index=255)
