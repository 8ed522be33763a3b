"""Tests of samrs_ray/inputs/formats/."""
