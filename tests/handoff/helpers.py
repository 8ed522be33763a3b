"""Validating STAC documents offline, against the schemas kept in tests/data/stac."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parents[1] / "data" / "stac"
CORE = "https://schemas.stacspec.org/v1.1.0/"


def stac_registry() -> Registry:
    """Every schema of tests/data/stac under its $id; the core's parts also where item.json and
    collection.json's relative $refs point."""
    resources = []
    for path in SCHEMAS.rglob("*.json"):
        contents = json.loads(path.read_text())
        resource = Resource.from_contents(contents)
        resources.append((contents["$id"].rstrip("#"), resource))
        if path.parent.name == "core":
            spec = {"collection": "collection-spec", "catalog": "catalog-spec"}.get(path.stem, "item-spec")
            resources.append((f"{CORE}{spec}/json-schema/{path.name}", resource))
    return Registry().with_resources(resources)


def validate_stac(document: dict, kind: str, schemas: Registry) -> list[str]:
    """Validate against the core schema of `kind` ('item', 'collection') and each extension the
    document declares (an extension missing from tests/data fails: nothing is fetched). Returns
    the schemas used."""
    used = [f"{CORE}{kind}-spec/json-schema/{kind}.json", *document.get("stac_extensions", [])]
    for uri in used:
        schema = schemas.contents(uri.rstrip("#"))
        jsonschema.Draft7Validator(schema, registry=schemas).validate(document)
    return used
