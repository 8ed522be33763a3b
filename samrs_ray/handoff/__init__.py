"""A committed version handed to other code: COCO json (coco.py), the layouts of SAMRS,
MMSegmentation and COCO per split (export.py), and the training reader (reader.py)."""
