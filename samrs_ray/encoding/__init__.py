"""The output encoding, apart from the engine that makes masks (masks/): label maps from
instance masks (labelmap.py), COCO RLE (rle.py), masks cropped to their boxes (crops.py) and the
PNG files (png.py); tile.py puts them together into a tile's files and rows."""
