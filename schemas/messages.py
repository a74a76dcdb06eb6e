"""JSON Schemas of the wire messages, shipped as files in ``schemas/json``.

The server validates request bodies against them, ``/openapi.json`` embeds
them, and clients may use the files as they are.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

#: Fields whose values are never repeated in an error message.
SECRET_FIELDS = frozenset({"password"})


def names() -> list[str]:
    folder = resources.files("schemas").joinpath("json")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


@cache
def load(name: str) -> dict[str, Any]:
    text = resources.files("schemas").joinpath("json", f"{name}.json").read_text("utf-8")
    return dict(json.loads(text))


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (f"{n}.json", Resource.from_contents(load(n))) for n in names()
    )


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load(name), registry=_registry())


def problems(name: str, instance: Any) -> list[dict[str, str]]:
    """Every way ``instance`` breaks schema ``name``, as ``{"path", "message"}``.

    An empty list means valid.  Paths are JSON Pointers into the instance.
    """
    found = []
    for error in sorted(validator(name).iter_errors(instance), key=lambda e: list(e.path)):
        pointer = "".join(f"/{part}" for part in error.path) or "/"
        message = error.message
        if any(str(part) in SECRET_FIELDS for part in error.path):
            # jsonschema quotes the value; never echo a secret back.
            message = f"does not meet '{error.validator}': {error.validator_value!r}"
        found.append({"path": pointer, "message": message})
    return found
