"""Tests of samrs_ray/formats/."""
