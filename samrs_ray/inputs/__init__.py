"""What a run reads: listing and pairing the input files (listing.py), the checks before Ray
starts (preflight.py), splits (splits.py), image headers and decoding (images.py), the
annotations a label file gives (annotation.py) and the readers of each format (formats/), and
the class presets of SOTA, SIOR and FAST (presets.py). Map runs: raster scenes (rasters.py),
vector layers (vectors.py), scenes from STAC Items (stac.py), found together (map_inputs.py).
Nothing here knows of Ray."""
