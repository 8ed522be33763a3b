"""Tests of samrs_ray/handoff/."""
