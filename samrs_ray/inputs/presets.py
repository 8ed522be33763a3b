"""Subset presets (SOTA, SIOR, FAST, custom): class orders, palettes, tiling and prompt settings.

Class order is the label id (0-based) and is part of the v1 output contract.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Optional

from samrs_ray.inputs.annotation import Annotation, InputIssue
from samrs_ray.inputs.formats import LABEL_FORMATS

IGNORE_ID = 255  # unlabeled pixels in a label map

SOTA_CLASSES = (
    "large-vehicle", "swimming-pool", "helicopter", "bridge", "plane", "ship",
    "soccer-ball-field", "basketball-court", "ground-track-field", "small-vehicle",
    "baseball-diamond", "tennis-court", "roundabout", "storage-tank", "harbor",
    "container-crane", "airport", "helipad",
)
SIOR_CLASSES = (
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney",
    "expressway-service-area", "expressway-toll-station", "dam", "golffield",
    "groundtrackfield", "harbor", "overpass", "ship", "stadium", "storagetank",
    "tenniscourt", "trainstation", "vehicle", "windmill",
)
FAST_CLASSES = (
    "A220", "A321", "A330", "A350", "ARJ21", "Baseball-Field", "Basketball-Court",
    "Boeing737", "Boeing747", "Boeing777", "Boeing787", "Bridge", "Bus", "C919",
    "Cargo-Truck", "Dry-Cargo-Ship", "Dump-Truck", "Engineering-Ship", "Excavator",
    "Fishing-Boat", "Football-Field", "Intersection", "Liquid-Cargo-Ship", "Motorboat",
    "other-airplane", "other-ship", "other-vehicle", "Passenger-Ship", "Roundabout",
    "Small-Car", "Tennis-Court", "Tractor", "Trailer", "Truck-Tractor", "Tugboat", "Van",
    "Warship",
)

PROMPT_TYPES = ("hbox", "rhbox", "point", "rbox-mask")


def class_key(name: str) -> str:
    """The key class names are matched on, everywhere: FAIR1M's spaces, iSAID's underscores and
    DOTA's hyphens are one separator, and case does not count (DIOR)."""
    return "-".join(name.replace("_", " ").replace("-", " ").lower().split())


def make_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """n distinct, saturated colours (golden-ratio hue steps), stable for a given n."""
    colours = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        v = 0.95 if i % 2 == 0 else 0.75
        r, g, b = colorsys.hsv_to_rgb(h, 0.85, v)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return tuple(colours)


@dataclass(frozen=True)
class Preset:
    """One subset's recipe. `tile_size=None` means images are used whole (SIOR)."""

    name: str
    classes: tuple[str, ...]
    label_format: str
    prompt: str
    tile_size: Optional[int] = 1024
    gap: int = 200
    iof_thr: float = 0.7
    pad_value: tuple[int, int, int] = (104, 116, 124)
    palette: tuple[tuple[int, int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.prompt not in PROMPT_TYPES:
            raise ValueError(f"preset {self.name}: unknown prompt type {self.prompt!r}")
        if self.label_format not in LABEL_FORMATS:
            raise ValueError(f"preset {self.name}: unknown label format {self.label_format!r}")
        if len(self.classes) > IGNORE_ID:
            raise ValueError(f"preset {self.name}: at most {IGNORE_ID} classes fit a uint8 map")
        if not self.palette:
            object.__setattr__(self, "palette", make_palette(len(self.classes)))
        keys = [class_key(c) for c in self.classes]
        if len(set(keys)) != len(keys):
            raise ValueError(f"preset {self.name}: class names collide after normalisation")

    def class_id(self, name: str) -> int:
        """Label id of a source class name; KeyError names the class when it is not in the preset."""
        key = class_key(name)
        for i, c in enumerate(self.classes):
            if class_key(c) == key:
                return i
        raise KeyError(f"class {name!r} is not in preset {self.name}")


PRESETS: dict[str, Preset] = {
    "sota": Preset("sota", SOTA_CLASSES, label_format="dota", prompt="hbox", tile_size=1024, gap=200),
    "sior": Preset("sior", SIOR_CLASSES, label_format="dior", prompt="hbox", tile_size=None, gap=0),
    "fast": Preset("fast", FAST_CLASSES, label_format="fair1m", prompt="rhbox", tile_size=600, gap=200),
}


def parse_class_list(text: str) -> tuple[str, ...]:
    """A custom class list: one name per line; blank lines and '#' comments ignored."""
    names = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return tuple(n for n in names if n)


def custom_preset(
    class_text: str,
    label_format: str = "dota",
    prompt: str = "hbox",
    tile_size: Optional[int] = 1024,
    gap: int = 200,
) -> Preset:
    classes = parse_class_list(class_text)
    if not classes:
        raise ValueError("custom preset: the class list is empty")
    return Preset("custom", classes, label_format=label_format, prompt=prompt, tile_size=tile_size, gap=gap)


def assign_class_ids(
    annotations: list[Annotation], preset: Preset
) -> tuple[list[tuple[Annotation, int]], list[InputIssue]]:
    """Each annotation with its label id in `preset`; a class the preset lacks is an issue."""
    kept: list[tuple[Annotation, int]] = []
    issues: list[InputIssue] = []
    for annotation in annotations:
        try:
            kept.append((annotation, preset.class_id(annotation.class_name)))
        except KeyError:
            issues.append(InputIssue(
                annotation.source,
                f"class {annotation.class_name!r} is not in preset {preset.name}",
                annotation.line,
            ))
    return kept, issues
