"""The gallery: `<report>/gallery.html`, a page to look at rather than read. It shows the summary
figures, a legend of the class colours, and a grid of tiles with their label maps drawn over
the pixels. The grid filters by class and by split, and the tiles a person should check first
are flagged and come first: those with an instance whose mask is empty, or whose predicted IoU
is below `low_iou`.

It works offline, from local disk or object storage. There is no CDN: the style and the script
are inside the page, and the images are files beside it (`gallery/<tile_id>.jpg`, and the
figures of `samrs-ray stats`). A filter can be given in the address, e.g.
`gallery.html#class=ship&split=val&flagged=1`. With `compare` (another version of the same
dataset, e.g. one made by another engine: `samrs-ray stats --compare 1`), each tile shows both
versions' label maps side by side (`gallery/<tile_id>.v<N>.jpg`), so a person sees which engine's
masks to keep.
"""

from __future__ import annotations

import html
import io
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from PIL import Image

from samrs_ray.dataset import layout, manifest, storage, versions
from samrs_ray.handoff.reader import load_tile
from samrs_ray.inputs.presets import IGNORE_ID, PRESETS, make_palette

THUMBNAIL = 256  # pixels, the longer side
FIGURES = ("summary_table.png", "class_counts.png", "mask_sizes.png", "examples.png")


@dataclass
class Card:
    """One tile in the grid."""

    tile_id: str
    split: str
    classes: list[str]
    flags: list[str] = field(default_factory=list)
    versus: str = ""  # the compared version's thumbnail, beside the page ('' without one)


def flags_of(instances: list[dict[str, Any]], low_iou: float) -> list[str]:
    """Why a tile deserves a look: 'N empty masks', 'N below IoU x' (none: [])."""
    empty = sum(1 for r in instances if r["area"] == 0)
    low = sum(1 for r in instances if r["predicted_iou"] is not None and r["predicted_iou"] < low_iou)
    return ([f"{empty} empty mask{'s' * (empty > 1)}"] if empty else []) + \
        ([f"{low} below IoU {low_iou:g}"] if low else [])


def overlay(pixels: np.ndarray, label: np.ndarray, palette: list[tuple[int, int, int]]) -> np.ndarray:
    """(H, W, 3) uint8 pixels with the label map's classes blended in at half strength."""
    colours = np.zeros((256, 3), np.float32)
    colours[: len(palette)] = palette
    labelled = label != IGNORE_ID
    blended = pixels.astype(np.float32)
    blended[labelled] = 0.5 * blended[labelled] + 0.5 * colours[label[labelled]]
    return blended.astype(np.uint8)


def thumbnail(image: np.ndarray) -> bytes:
    picture = Image.fromarray(image)
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def write_gallery(out: str, report: Optional[str] = None, storage_options: Optional[dict] = None,
                  version: versions.Version = None, max_tiles: int = 300, low_iou: float = 0.5,
                  compare: versions.Version = None) -> list[Card]:
    """Write `gallery.html` and its thumbnails into `report` (default <out>/report) for a
    committed version, each tile beside its label map in version `compare` when given; returns
    the cards shown, flagged first."""
    fs, root = storage.open_fs(out, storage_options)
    record = versions.find(fs, root, version)
    preset = record.config.get("preset") or {}
    classes = list(preset.get("classes") or [])
    known = PRESETS.get(preset.get("name", ""))
    palette = list(known.palette) if known and list(known.classes) == classes else list(make_palette(len(classes)))
    tiles = {t["tile_id"]: t for t in manifest.read_dataset(out, "tiles", storage_options, version=version).to_pylist()}
    instances: dict[str, list[dict[str, Any]]] = defaultdict(list)
    columns = ["tile_id", "class_name", "area", "predicted_iou"]
    for row in manifest.read_dataset(out, "instances", storage_options, columns, version=version).to_pylist():
        instances[row["tile_id"]].append(row)
    cards = [Card(t, tiles[t]["split"] or "trainval", sorted({r["class_name"] for r in instances[t]}),
                  flags_of(instances[t], low_iou)) for t in sorted(tiles)]
    cards = sorted(cards, key=lambda c: (not c.flags, c.tile_id))[:max_tiles]

    report = report or layout.report_folder(out)
    report_fs, report_root = storage.open_fs(report, storage_options)
    other = None if compare is None else versions.find(fs, root, compare)
    other_tiles = {} if other is None else {
        t["tile_id"]: t for t in manifest.read_dataset(out, "tiles", storage_options, version=compare).to_pylist()}
    for card in cards:
        tile = load_tile(tiles[card.tile_id], storage_options)
        storage.write_atomic(report_fs, storage.join(report_root, "gallery", f"{card.tile_id}.jpg"),
                             thumbnail(overlay(tile["image"], tile["label"], palette)))
        if card.tile_id in other_tiles:  # a tile of only one version is shown alone
            theirs = load_tile(other_tiles[card.tile_id], storage_options)
            card.versus = f"gallery/{card.tile_id}.v{other.version}.jpg"
            storage.write_atomic(report_fs, storage.join(report_root, card.versus),
                                 thumbnail(overlay(theirs["image"], theirs["label"], palette)))
    figures = [f for f in FIGURES if storage.exists(report_fs, storage.join(report_root, f))]
    page = gallery_html(record, cards, classes, palette, figures, len(tiles), low_iou, other)
    storage.write_atomic(report_fs, storage.join(report_root, "gallery.html"), page.encode())
    return cards


def gallery_html(record: versions.RunRecord, cards: list[Card], classes: list[str], palette: list[tuple[int, int, int]],
                 figures: list[str], n_tiles: int, low_iou: float, other: Optional[versions.RunRecord] = None) -> str:
    e = html.escape
    names = [f"v{r.version} {r.model.get('id', '')}" for r in (record, other) if r is not None]
    pair = lambda c: (f'<div class="pair"><img src="gallery/{e(c.tile_id)}.jpg" alt="{e(names[0])}" title="{e(names[0])}">'  # noqa: E731
                      f'<img src="{e(c.versus)}" alt="{e(names[1])}" title="{e(names[1])}"></div>' if c.versus else
                      f'<img src="gallery/{e(c.tile_id)}.jpg" alt="{e(c.tile_id)}" loading="lazy">')
    legend = "".join(f'<li><span class="swatch" style="background:rgb{tuple(palette[i])}"></span>{e(name)}</li>'
                     for i, name in enumerate(classes))
    splits = sorted({c.split for c in cards})
    options = lambda values: "".join(f'<option value="{e(v)}">{e(v)}</option>' for v in values)  # noqa: E731
    grid = "".join(
        f'<figure class="card{" flagged" if c.flags else ""}" data-classes="{e("|".join(c.classes))}" '
        f'data-split="{e(c.split)}" data-flagged="{int(bool(c.flags))}">'
        + pair(c) +
        f'<figcaption>{e(c.tile_id)} <small>{e(c.split)}</small>'
        + "".join(f'<span class="flag">{e(f)}</span>' for f in c.flags) + "</figcaption></figure>"
        for c in cards)
    shown = f"{len(cards)} of {n_tiles} tiles" + (", flagged first" if any(c.flags for c in cards) else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>samrs-ray gallery: {e(record.run_id)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #fafafa; }}
#legend {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .3em 1em; }}
.swatch {{ display: inline-block; width: 1em; height: 1em; margin-right: .3em; vertical-align: middle; }}
#grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({THUMBNAIL}px, 1fr)); gap: .6em; }}
.card {{ margin: 0; background: white; border: 2px solid #ddd; }}
.card.flagged {{ border-color: #d33; }}
.card img {{ width: 100%; display: block; }}
.pair {{ display: flex; gap: 2px; }} .pair img {{ width: 50%; }}
#grid.versus {{ grid-template-columns: repeat(auto-fill, minmax({2 * THUMBNAIL}px, 1fr)); }}
figcaption {{ font-size: .8em; padding: .2em; }}
.flag {{ color: #d33; margin-left: .5em; }}
.figures img {{ max-width: 48%; }}
</style></head><body>
<h1>samrs-ray gallery</h1>
<p>Version {record.version} (run {e(record.run_id)}), model {e(record.model.get("id", ""))}: {shown}.
Flagged: an instance with an empty mask, or a predicted IoU below {low_iou:g}.</p>
{f'<p class="versus-note">Side by side: left {e(names[0])}, right {e(names[1])}.</p>' if other else ''}
<div class="figures">{"".join(f'<img src="{e(f)}" alt="{e(f)}">' for f in figures)}</div>
<h2>Classes</h2><ul id="legend">{legend}</ul>
<p><label>class <select id="class"><option value="">all</option>{options(classes)}</select></label>
<label>split <select id="split"><option value="">all</option>{options(splits)}</select></label>
<label><input type="checkbox" id="flagged"> flagged only</label> <span id="count"></span></p>
<div id="grid"{' class="versus"' if other else ''}>{grid}</div>
<script>
const controls = {{class: document.getElementById("class"), split: document.getElementById("split"),
                  flagged: document.getElementById("flagged")}};
function apply() {{
  let shown = 0;
  for (const card of document.querySelectorAll(".card")) {{
    const ok = (!controls.class.value || card.dataset.classes.split("|").includes(controls.class.value))
      && (!controls.split.value || card.dataset.split === controls.split.value)
      && (!controls.flagged.checked || card.dataset.flagged === "1");
    card.hidden = !ok;
    shown += ok;
  }}
  document.getElementById("count").textContent = shown + " shown";
}}
const wanted = new URLSearchParams(location.hash.slice(1));
controls.class.value = wanted.get("class") || "";
controls.split.value = wanted.get("split") || "";
controls.flagged.checked = wanted.get("flagged") === "1";
for (const control of Object.values(controls)) control.addEventListener("change", apply);
apply();
</script>
</body></html>
"""
