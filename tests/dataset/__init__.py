"""Tests of samrs_ray/dataset/."""
