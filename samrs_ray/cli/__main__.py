"""`python -m samrs_ray.cli`: the `samrs-ray` command."""

import sys

from samrs_ray.cli import main

sys.exit(main())
