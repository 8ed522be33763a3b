"""A committed version handed to other code: COCO json (coco.py), the layouts of SAMRS,
MMSegmentation and COCO per split (export.py), label COGs and GeoParquet (geo_export.py,
geoparquet.py), the training reader (reader.py) and TorchGeo's datasets over the geo export
(torchgeo.py)."""
