"""The `samrs-ray` command: main() parses the options (parser.py) and runs the subcommand
(commands.py); an error ends it with its exit code (samrs_ray/errors.py)."""

from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from samrs_ray.cli.commands import COMMANDS
from samrs_ray.cli.parser import build_parser
from samrs_ray.errors import SamrsRayError


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command](args)
    except SamrsRayError as error:  # its own words, and its exit code (errors.py)
        print(f"samrs-ray {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except FileNotFoundError as error:  # a dataset, version or file a command was to read
        print(f"samrs-ray {args.command}: {error}", file=sys.stderr)
        return 1
