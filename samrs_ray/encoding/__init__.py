"""The output encoding, apart from the engine that makes masks (masks/): label maps from
instance masks (labelmap.py), COCO RLE (rle.py), and the PNG files (png.py). outputs.py puts
them together into a tile's files and rows."""
