"""Fuzz every label reader and the scene image checks with the property tests' strategies, many
more times than the test suite does, and count what came out.

    .venv/bin/python -m bench.fuzz_readers [--examples 10000] [--seed N] [--only dota,images]

Run it from the repo root with `-m`: the strategies live in tests/formats/ (strategies.py,
image_strategies.py) and import from there as the `tests` package, so the tests and this
script share one copy without any sys.path edits.

Each example must give annotations, issues, or an InputError naming the file (images: a
size and RGB pixels, or an InputError); anything else is a failure. Failures are collected,
not raised, so one bug does not hide the rest of the run; each distinct one is printed with a
shortest input that showed it. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from contextlib import contextmanager

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

try:
    from tests.inputs.formats.image_strategies import check_image, images
    from tests.inputs.formats.strategies import LABELS, URIS, check_labels
except ModuleNotFoundError as err:  # run as a file path, `tests` is not importable
    sys.exit(f"{err}: run from the repo root as `python -m bench.fuzz_readers`")

LABEL_OUTCOMES = ("annotations", "issues", "empty", "InputError")
IMAGE_OUTCOMES = ("decoded", "header only", "InputError")
# images: the decode cap keeps a mutated header from asking for a multi-GB decode
IMAGE_CAP = 1 << 20


def targets() -> dict[str, tuple[st.SearchStrategy, object]]:
    sides = st.integers(1, 10_000)
    found = {fmt: (st.tuples(strategy, st.sampled_from(URIS), sides, sides),
                   lambda args, fmt=fmt: check_labels(fmt, *args)) for fmt, strategy in LABELS.items()}
    found["images"] = (st.tuples(images(), st.sampled_from(URIS), st.booleans()),
                       lambda args: check_image(args[0], args[1], IMAGE_CAP, args[2]))
    return found


@contextmanager
def quiet_stderr():
    """libtiff and libjpeg print a line to file descriptor 2 for each fault in a fuzzed file."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def fuzz(strategy, check, examples: int, seed_value: int | None) -> tuple[Counter, dict, float]:
    """Outcome counts, distinct failures (kind -> (count, shortest input, traceback)), seconds."""
    counts: Counter = Counter()
    failures: dict[str, list] = {}

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(args):
        try:
            counts[check(args)] += 1
        except Exception as err:  # the contract is broken: record it and go on
            counts["failures"] += 1
            frame = traceback.extract_tb(err.__traceback__)[-1]
            kind = f"{type(err).__name__} at {frame.filename}:{frame.lineno}: {str(err)[:200]}"
            seen = failures.setdefault(kind, [0, args, traceback.format_exc()])
            seen[0] += 1
            if len(repr(args)) < len(repr(seen[1])):
                seen[1] = args

    if seed_value is not None:
        run = seed(seed_value)(run)
    start = time.perf_counter()
    with warnings.catch_warnings(), quiet_stderr():
        # PIL, shapely and the XML codecs warn about what the fuzzer feeds them; only exceptions count
        warnings.simplefilter("ignore")
        run()
    return counts, failures, time.perf_counter() - start


def table(title: str, outcomes: tuple[str, ...], rows: list[tuple[str, Counter, float]]) -> str:
    head = ["reader", "examples", *outcomes, "failures", "seconds"]
    lines = [f"| {' | '.join(head)} |", f"|{'---|' * len(head)}"]
    for name, counts, seconds in rows:
        cells = [name, f"{sum(counts.values()):,}", *(f"{counts[o]:,}" for o in outcomes),
                 f"{counts['failures']:,}", f"{seconds:.1f}"]
        lines.append(f"| {' | '.join(cells)} |")
    return f"{title}\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="examples per reader (default 10000)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed, for a repeatable run")
    parser.add_argument("--only", default="", help="comma-separated readers (dota, dior, fair1m, images)")
    args = parser.parse_args(argv)

    chosen = targets()
    if args.only:
        chosen = {name: chosen[name] for name in args.only.split(",")}
    labels, image_rows, all_failures = [], [], {}
    for name, (strategy, check) in chosen.items():
        counts, failures, seconds = fuzz(strategy, check, args.examples, args.seed)
        (image_rows if name == "images" else labels).append((name, counts, seconds))
        all_failures.update({f"{name}: {kind}": seen for kind, seen in failures.items()})
        print(f"{name}: {sum(counts.values()):,} examples, {counts['failures']} failures, {seconds:.1f} s",
              file=sys.stderr, flush=True)

    if labels:
        print(table("Label readers (read_labels, then drop_outside_image):", LABEL_OUTCOMES, labels) + "\n")
    if image_rows:
        print(table(f"Scene images (image_size, then decode_image with a {IMAGE_CAP:,}-pixel cap):",
                    IMAGE_OUTCOMES, image_rows) + "\n")
    for kind, (count, shortest, trace) in all_failures.items():
        print(f"FAILURE x{count}: {kind}\n  shortest input: {shortest!r:.600}\n{trace}")
    print(f"{len(all_failures)} distinct failures" if all_failures else "no failures")
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main())
