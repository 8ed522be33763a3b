"""Several versions of one dataset scored against the same ground truth, side by side: per class,
mean IoU and mean boundary F-score, one column group per version (each names its engine). Run the
job with two engines into one --out (each run is a version; masks are recomputed, RGB tiles
kept), then `samrs-ray evaluate --version 1 --version 2` shows which engine's masks to keep.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from samrs_ray.report.evaluate import EvalResult, evaluate, num


def compare(out: str, gt: str, gt_format: str, versions: Sequence[str],
            storage_options: Optional[dict] = None) -> list[EvalResult]:
    """evaluate() of each version (number or run id), in the order given."""
    return [evaluate(out, gt, gt_format, storage_options, version) for version in versions]


def format_comparison(results: Sequence[EvalResult], versions: Sequence[str]) -> str:
    """A plain-text table: a row per class (and 'all'), per version the instances, mean IoU (mIoU)
    and mean boundary F-score (BF)."""
    first = results[0]
    heads = [f"v{v} {r.model}"[:22] for v, r in zip(versions, results)]
    lines = [f"Mask quality of {first.out} against {first.gt} ({first.gt_format}), {len(results)} versions", "",
             f"  {'':<24}" + "".join(f"{h:>24}" for h in heads),
             f"  {'class':<24}" + "".join(f"{'n':>6}{'mIoU':>9}{'BF':>9}" for _ in results)]
    classes = sorted({c for r in results for c in r.per_class})
    for name in [*classes, "all"]:
        if name == "all":
            lines.append("  " + "-" * (24 + 24 * len(results)))
        cells = []
        for r in results:
            s = r.overall if name == "all" else r.per_class.get(name)
            cells.append(f"{0:>6}{'n/a':>9}{'n/a':>9}" if s is None else
                         f"{s.instances:>6}{num(s.mean_iou):>9}{num(s.boundary_f):>9}")
        lines.append(f"  {name:<24}" + "".join(cells))
    best = max(range(len(results)), key=lambda i: -math.inf if math.isnan(results[i].overall.mean_iou)
               else results[i].overall.mean_iou)
    lines += ["", f"  highest mean IoU: version {versions[best]} ({results[best].model})"]
    return "\n".join(lines)
