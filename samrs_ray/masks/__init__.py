"""Mask backends (SAM, box fill), label maps, RLE and PNG encoding."""
