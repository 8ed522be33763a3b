"""samrs-ray: SAMRS-style segmentation datasets from detection boxes, on Ray."""

import time

__version__ = "0.1.0"
# When this process began its work, near enough (the package is the CLI's first import): a run's
# summary counts its wall time from here, Ray's start included.
STARTED = time.monotonic()
