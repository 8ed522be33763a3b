"""Tests of samrs_ray/report/."""
