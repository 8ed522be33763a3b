"""samrs-ray: SAMRS-style segmentation datasets from detection boxes, on Ray."""

__version__ = "0.1.0"
