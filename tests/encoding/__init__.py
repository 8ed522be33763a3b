"""Tests of samrs_ray/encoding/."""
