"""What each `samrs-ray` subcommand does with its options: each calls the modules that do the
work, prints what a user needs, and returns the exit code (samrs_ray/errors.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from samrs_ray.cli.parser import config_from_args, refuse_relative_paths
from samrs_ray.errors import NO_USABLE_SCENE, PARTIAL


def cmd_generate(args: argparse.Namespace) -> int:
    from samrs_ray.job import generate

    refuse_relative_paths(args)
    record = generate(config_from_args(args))
    if record.partial:  # first: a store that gave no scene at all must not read as "no usable scene"
        print(f"samrs-ray generate: partial: the store did not give {len(record.partial)} scenes; their "
              f"committed tiles were kept, and the next run reads them again", file=sys.stderr)
        return PARTIAL
    if record.counts["scenes_ok"] == 0:
        print(f"samrs-ray generate: no scene could be used; the reasons are in {args.out}/manifest/errors",
              file=sys.stderr)
        return NO_USABLE_SCENE
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from samrs_ray.dataset import storage, versions

    fs, out = storage.open_fs(args.out, args.storage_options)
    history = versions.history(fs, out)
    if not history:
        print(f"{args.out}: no committed runs", file=sys.stderr)
        return 1
    print(format_runs(history, versions.retained(history, int(history[-1].config.get("keep_versions", 1)))))
    return 0


def format_runs(history: Sequence[Any], readable: Sequence[Any]) -> str:
    """One line per committed version; '*' marks those still readable (--version)."""
    header = f"  {'version':>7} {'run':<36} {'finished (UTC)':<25} {'model':<12} {'tiles':>7} {'processed':>9} " \
             f"{'skipped':>8} {'removed':>8} {'failed':>7} {'instances':>9} {'errors':>7}"
    lines = [header]
    for r in history:
        c, mark = r.counts, "*" if r in readable else " "
        lines.append(f"{mark} {r.version or 'v1':>7} {r.run_id:<36} {r.finished_at:<25} {r.model['id']:<12} "
                     f"{c['tiles']:>7} {c['processed']:>9} {c['skipped']:>8} {c['removed']:>8} {c['failed']:>7} "
                     f"{c['instances']:>9} {c['errors']:>7}")
    return "\n".join(lines + ["* readable: its files are kept (generate --keep-versions)"])


def cmd_stats(args: argparse.Namespace) -> int:
    from samrs_ray.dataset import layout
    from samrs_ray.report.gallery import write_gallery
    from samrs_ray.report.stats import write_report

    stats = write_report(args.out, args.report, args.storage_options, version=args.version, address=args.address)
    cards = write_gallery(args.out, args.report, args.storage_options, args.version, compare=args.compare)
    report = args.report or layout.report_folder(args.out)
    for name, subset in stats["subsets"].items():
        print(f"{name}: {subset['images']} images, {subset['tiles']} tiles, {subset['instances']} instances, "
              f"{subset['classes_present']} of {subset['classes']} classes present")
    print(f"report: {report}/summary.md, stats.json and figures (*.png); {report}/gallery.html "
          f"({len(cards)} tiles, {sum(bool(c.flags) for c in cards)} flagged)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from samrs_ray.report.evaluate import evaluate, format_result

    chosen = args.version or [None]
    if len(chosen) > 1:
        from samrs_ray.report.compare import compare, format_comparison

        print(format_comparison(compare(args.out, args.gt, args.gt_format, chosen, args.storage_options), chosen))
        return 0
    print(format_result(evaluate(args.out, args.gt, args.gt_format, args.storage_options, chosen[0])))
    return 0


def cmd_export_coco(args: argparse.Namespace) -> int:
    from samrs_ray.handoff.coco import write_coco

    path, root, images, annotations = write_coco(args.out, args.dest, args.storage_options, args.version)
    print(f"{path}: {images} images (file names relative to {root}), {annotations} annotations")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from samrs_ray.handoff.export import export

    counts = export(args.out, args.dest, args.format, args.version, args.storage_options, args.instances)
    if args.format in ("geo", "stac"):
        items = f"; collection.json with {counts['scenes']} items ({counts['items']} rewritten)" \
            if args.format == "stac" else ""
        print(f"{args.dest}: {counts['scenes']} scenes ({counts['written']} written, {counts['removed']} removed), "
              f"{counts['objects']} objects in instances.parquet{items}")
        return 0
    splits = ", ".join(f"{name} {n}" for name, n in counts.items() if name not in ("tiles", "written", "removed"))
    print(f"{args.dest}: {counts['tiles']} tiles ({counts['written']} written, {counts['removed']} removed); {splits}")
    return 0


COMMANDS = {"generate": cmd_generate, "runs": cmd_runs, "stats": cmd_stats, "evaluate": cmd_evaluate,
            "export-coco": cmd_export_coco, "export": cmd_export}


