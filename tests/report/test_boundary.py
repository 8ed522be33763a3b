"""samrs_ray/report/boundary.py: the boundary F-score of two mask crops."""

from __future__ import annotations

import numpy as np

from samrs_ray.encoding.crops import MaskCrop
from samrs_ray.report.boundary import boundary, boundary_f, dilate


def square(x0: int, y0: int, size: int) -> MaskCrop:
    return MaskCrop(x0, y0, np.ones((size, size), bool))


def test_boundary_is_the_outline_and_dilation_grows_by_the_radius() -> None:
    edge = boundary(np.pad(np.ones((4, 4), bool), 1))
    assert edge.sum() == 12 and not edge[2:4, 2:4].any()
    grown = dilate(np.pad(np.array([[True]]), 3), 2)
    assert grown.sum() == 25


def test_scores() -> None:
    assert boundary_f(square(10, 10, 20), square(10, 10, 20)) == 1.0
    assert boundary_f(square(11, 10, 20), square(10, 10, 20)) == 1.0  # within the 2-pixel tolerance
    shifted = boundary_f(square(16, 10, 20), square(10, 10, 20))
    assert 0.2 < shifted < 0.8
    # a much larger mask: IoU 0.25, and half its outline is far from the truth's
    assert boundary_f(square(10, 10, 40), square(10, 10, 20)) < 0.6
    assert boundary_f(None, square(0, 0, 3)) == boundary_f(square(0, 0, 3), None) == 0.0
