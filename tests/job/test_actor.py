"""The mask stage's actor: a tile whose objects ask for several prompt kinds goes to the engine once
per kind, and its masks come back in object order."""

from __future__ import annotations

import json

import numpy as np

from samrs_ray.inputs.annotation import Annotation
from samrs_ray.job.actor import MaskActor
from samrs_ray.job.rows import Status, empty_row
from samrs_ray.masks.backend import unpack_masks
from samrs_ray.planning.plan import object_record
from tests.datasets import config


def test_a_tile_with_points_and_boxes_gets_each_mask_in_object_order(tmp_path) -> None:
    objects = [
        Annotation("plane", (10, 10, 30, 20), layer="/l.gpkg", line=0),
        Annotation("plane", (49.5, 59.5, 50.5, 60.5), layer="/l.gpkg", line=1, prompt="point"),
        Annotation("ship", (70, 5, 90, 40), layer="/l.gpkg", line=2),
    ]
    row = empty_row()
    row.update(status=Status.TODO, width=100, height=80, pixels=np.zeros((80, 100, 3), np.uint8).tobytes(),
               objects=json.dumps([object_record(a, 0) for a in objects]), label_source_uri="/l.gpkg")
    batch = {key: np.array([value], dtype=object) for key, value in row.items()}
    actor = MaskActor(config(tmp_path, tmp_path, tmp_path / "out"))  # the box baseline
    calls = []
    predict = actor.backend.predict
    actor.backend.predict = lambda images, prompts: calls.append([p.kind for p in prompts]) or predict(images, prompts)
    done = actor(batch)
    assert calls == [["hbox", "point"]]  # one engine call: the tile twice, once per kind
    masks = unpack_masks(done["masks"][0], 3, 80, 100)
    assert masks[0, 10:20, 10:30].all() and masks[0].sum() == 200
    assert masks[1].sum() <= 1 and masks[2, 5:40, 70:90].all() and masks[2].sum() == 700
    boxes = np.frombuffer(done["prompt_boxes"][0], np.float32).reshape(3, 4)
    assert boxes[1].tolist() == [49.5, 59.5, 50.5, 60.5] and boxes[2].tolist() == [70, 5, 90, 40]
