"""Tests of samrs_ray/planning/."""
