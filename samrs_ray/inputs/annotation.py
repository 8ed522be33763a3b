"""The one annotation model every reader produces, and the error record for bad input."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from samrs_ray.errors import InputError, StoreError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
Quad = tuple[float, float, float, float, float, float, float, float]  # x1, y1, ..., x4, y4


@dataclass(frozen=True)
class Annotation:
    """One object from a detection label file, in the pixel frame of its image.

    `polygon` is the 4-point (rotated) box when the source has one (DOTA, DIOR-R, FAIR1M),
    else None (horizontal-box sources such as DIOR VOC). `hbox` is always set: the source's
    horizontal box, or the box enclosing `polygon`.
    """

    class_name: str
    hbox: Box
    polygon: Optional[Quad] = None
    difficult: bool = False
    source: str = ""
    line: Optional[int] = None  # 1-based line (text formats) or object index (XML formats); a feature's id
    layer: Optional[str] = None  # the vector layer of a map feature (inputs/vectors.py); None for label files
    prompt: Optional[str] = None  # the prompt kind the object asks for (a point feature: 'point'); None: the preset's


def enclosing_box(polygon: Quad) -> Box:
    xs, ys = polygon[0::2], polygon[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


class Word(str, Enum):
    """A word of a fixed vocabulary: compares equal to, prints as and is stored as its string."""

    __str__ = str.__str__
    __format__ = str.__format__


class Stage(Word):
    """Where an input was found unusable (the errors manifest's `stage` column)."""

    READ = "read"  # the scene's files: bytes, image, label file
    STORE = "store"  # the store did not give a file's bytes (StoreError): the file may be fine
    PAIR = "pair"  # an image without its label file, or the other way round
    TILE = "tile"  # an object no tile holds
    INFER = "infer"  # prompts or mask inference
    WRITE = "write"  # the tile's PNGs and rows


@dataclass(frozen=True)
class InputIssue:
    """One row of the errors manifest: an input (or one object of it) that was not used."""

    source: str
    reason: str
    line: Optional[int] = None
    stage: Stage = Stage.READ

    @classmethod
    def from_error(cls, err: InputError, stage: Stage = Stage.READ) -> "InputIssue":
        return cls(source=err.source, reason=err.reason, line=err.line, stage=stage)

    @classmethod
    def from_store_error(cls, err: StoreError) -> "InputIssue":
        """A file the store did not give (the file may be fine: its scene is read again next run)."""
        return cls(source=err.uri, reason=f"cannot read from the store: {err.cause}", stage=Stage.STORE)

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.reason}"


@dataclass
class ParsedLabels:
    """What a reader returns for one label file: usable objects plus per-object problems."""

    source: str
    annotations: list[Annotation]
    issues: list[InputIssue]
    meta: dict[str, str]  # header fields such as imagesource, gsd, filename, size
