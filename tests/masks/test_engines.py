"""samrs_ray/masks/engines.py: the engines by name, each resolvable without loading any other."""

from __future__ import annotations

import pytest

from samrs_ray.errors import ConfigError
from samrs_ray.masks.box import BoxBackend
from samrs_ray.masks.engines import ENGINES
from tests.datasets import config


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_resolves_its_check_and_its_builder(name: str) -> None:
    engine = ENGINES[name]
    assert engine.name == name
    for path in (engine.checker, engine.builder):
        module, function = path.split(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function))


def test_the_box_engine_has_no_weights_and_builds_the_box_backend() -> None:
    box = config("i", "l", "o", model="box")
    assert (ENGINES["box"].check(box), box.model_id) == ("", "box-fill")
    assert isinstance(ENGINES["box"].build(box, None), BoxBackend)


def test_model_types_are_the_engines_own() -> None:
    assert config("i", "l", "o", model="sam", model_type="vit_b").model_id == "sam-vit_b"
    with pytest.raises(ConfigError, match=r"--model-type of --model sam must be one of"):
        config("i", "l", "o", model="sam", model_type="hiera_t")
    with pytest.raises(ConfigError, match=r"--model must be one of \('sam', 'sam2', 'hq-sam', 'box'\)"):
        config("i", "l", "o", model="sam3")
