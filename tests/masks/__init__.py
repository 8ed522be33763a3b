"""Tests of samrs_ray/masks/."""
