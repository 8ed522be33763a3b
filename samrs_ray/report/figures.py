"""The report's figures, drawn from the statistics dict (stats.compute_stats) with matplotlib.

Figures are built as `matplotlib.figure.Figure` objects and rendered with the Agg canvas, never
through pyplot: no global backend switch, no open-figure registry to leak, safe in workers.
Counts that span orders of magnitude get a log axis (see `wants_log`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from samrs_ray.encoding.rle import mask_box
from samrs_ray.inputs.presets import IGNORE_ID

LOG_SPAN = 50  # max / min of the positive counts from which an axis goes logarithmic
BAR = "#4c72b0"
MARK = "#dd8452"


def wants_log(values: Sequence[float]) -> bool:
    positive = [v for v in values if v and v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) >= LOG_SPAN


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def summary_table(stats: dict[str, Any]) -> Figure:
    """One row per subset, like SAMRS's dataset comparison table."""
    columns = ["subset", "images", "tiles", "tile size", "classes", "instances", "empty masks"]
    rows = [[name, f"{s['images']:,}", f"{s['tiles']:,}", ", ".join(s["tile_sizes"]) or "-",
             f"{s['classes']} ({s['classes_present']} present)", f"{s['instances']:,}", f"{s['empty_masks']:,}"]
            for name, s in stats["subsets"].items()]
    fig = new_figure(10, 0.7 + 0.35 * (1 + max(1, len(rows))))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(f"Dataset summary (run {stats['run_id']}, model {stats['model']})", fontsize=11)
    if rows:
        table = ax.table(cellText=rows, colLabels=columns, loc="center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(10)
        table.scale(1, 1.5)
        for (r, _), cell in table.get_celld().items():
            if r == 0:
                cell.set_text_props(weight="bold")
    return fig


def class_counts(stats: dict[str, Any]) -> Figure:
    """Per subset, two panels: instances per class, and pixels per class (label-map pixels as
    bars with the sum of instance areas as markers; or the areas as bars when the label maps
    were not read). Class names on the y axis in label-id order."""
    subsets = list(stats["subsets"].items())
    heights = [len(s["per_class"]) + 5 for _, s in subsets] or [1]  # + room for title and axis
    fig = new_figure(13, max(3.5, 0.25 * sum(heights)))
    axes = fig.subplots(len(heights), 2, squeeze=False, gridspec_kw={"height_ratios": heights})
    for (name, s), (left, right) in zip(subsets, axes):
        names = [c["name"] for c in s["per_class"]]
        y = np.arange(len(names))
        counts = [c["instances"] for c in s["per_class"]]
        bars(left, y, counts, names, f"{name}: instances per class", "instances", "instances")
        areas = [c["instance_pixels"] for c in s["per_class"]]
        label = [c["label_pixels"] for c in s["per_class"]]
        if all(v is not None for v in label):
            bars(right, y, label, names, f"{name}: pixels per class", "pixels", "label-map pixels", numbers=False)
            shown = [v if v > 0 else np.nan for v in areas]
            right.plot(shown, y, linestyle="none", marker="D", markersize=4, color=MARK,
                       label="sum of instance areas")
            if wants_log(label + areas):
                right.set_xscale("log")
            right.legend(loc="lower right", fontsize=8)
        else:
            bars(right, y, areas, names, f"{name}: pixels per class", "pixels", "sum of instance areas")
    return fig


def bars(ax: Any, y: np.ndarray, values: list[int], names: list[str], title: str, xlabel: str, label: str,
         numbers: bool = True) -> None:
    """Horizontal bars, class 0 on top, each labelled with its count (zeros at the axis)."""
    container = ax.barh(y, values, color=BAR, label=label)
    if numbers:
        ax.bar_label(container, labels=[f"{v:,}" if v else "" for v in values], padding=3, fontsize=7)
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=11)
    if wants_log(values):
        ax.set_xscale("log")
        xlabel += " (log scale)"
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.margins(x=0.12)  # room for the labels
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    for yi, v in zip(y, values):
        if v == 0:  # no bar to label (and no 0 on a log axis): write it at the axis
            ax.annotate("0", (0, yi), xycoords=ax.get_yaxis_transform(), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7)


def mask_sizes(stats: dict[str, Any]) -> Figure:
    """Per subset, the mask-size histogram: bins of hist_bin pixels up to the last edge, then
    one overflow bin (a different colour) for the larger masks."""
    subsets = list(stats["subsets"].items())
    width, edges = stats["hist_bin"], stats["hist_edges"]
    fig = new_figure(11, 3.2 * max(1, len(subsets)))
    axes = fig.subplots(max(1, len(subsets)), 1, squeeze=False)[:, 0]
    for (name, s), ax in zip(subsets, axes):
        hist = s["mask_size_hist"]
        ax.bar(edges[:-1], hist[:-1], width=width, align="edge", color=BAR, edgecolor="white", linewidth=0.3,
               label=f"{width}-pixel bins")
        ax.bar([edges[-1]], [hist[-1]], width=width, align="edge", color=MARK,
               label=f"{edges[-1]:,} pixels or more")
        ax.set_title(f"{name}: mask sizes ({s['instances']:,} instances)", fontsize=11)
        ax.set_xlabel("mask area (pixels)")
        ticks = list(range(0, edges[-1] + 1, 250))
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks[:-1]] + [f"{edges[-1]:,}+"])
        ax.set_xlim(0, edges[-1] + width)
        ylabel = "instances"
        if wants_log(hist):
            ax.set_yscale("log")
            ylabel += " (log scale)"
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return fig


@dataclass
class ExampleTile:
    """What one example panel shows. image (H, W, 3) uint8; label (H, W) uint8 (255 unlabeled);
    masks: (class id, (H, W) bool) per instance; palette[i] is class i's RGB colour."""

    title: str
    image: np.ndarray
    label: np.ndarray
    masks: list[tuple[int, np.ndarray]]
    class_names: list[str]
    palette: Sequence[tuple[int, int, int]]


def blend(image: np.ndarray, label: np.ndarray, palette: Sequence[tuple[int, int, int]],
          alpha: float = 0.45) -> np.ndarray:
    """image (H, W, 3) uint8 with the palette colour of each labelled pixel blended in -> (H, W, 3) uint8."""
    colours = np.zeros((256, 3), dtype=np.float32)
    colours[: len(palette)] = np.asarray(palette, dtype=np.float32).reshape(-1, 3)
    labelled = (label != IGNORE_ID)[..., None]
    mixed = image.astype(np.float32) * (1 - alpha) + colours[label] * alpha
    return np.where(labelled, mixed, image).astype(np.uint8)


def examples_grid(examples: list[ExampleTile], columns: int = 3) -> Figure:
    """Tiles with their colour label map blended in and each instance's outline in white."""
    columns = max(1, min(columns, len(examples)))
    rows = math.ceil(len(examples) / columns)
    fig = new_figure(5.2 * columns, 5.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[len(examples):]:
        ax.axis("off")
    for ex, ax in zip(examples, axes):
        ax.imshow(blend(ex.image, ex.label, ex.palette), interpolation="antialiased")
        for _, mask in ex.masks:
            outline(ax, mask)
        height, width = ex.label.shape
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_title(ex.title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        present = sorted({cid for cid, _ in ex.masks})
        handles = [Patch(color=np.asarray(ex.palette[c]) / 255, label=ex.class_names[c])
                   for c in present if c < len(ex.class_names)]
        if handles:
            ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)
    return fig


def outline(ax: Any, mask: np.ndarray) -> None:
    """The mask's boundary as a vector contour, computed on its bounding box only."""
    box = mask_box(mask)
    if box is None:
        return
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0 = max(x0 - 1, 0), max(y0 - 1, 0)
    x1, y1 = min(x1 + 1, mask.shape[1]), min(y1 + 1, mask.shape[0])
    crop = np.pad(mask[y0:y1, x0:x1], 1).astype(np.float32)  # closed contours at the tile edge too
    xs = np.arange(x0 - 1, x1 + 1)
    ys = np.arange(y0 - 1, y1 + 1)
    ax.contour(xs, ys, crop, levels=[0.5], colors="white", linewidths=0.7)
