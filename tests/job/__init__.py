"""Tests of samrs_ray/job/."""
