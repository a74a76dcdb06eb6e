"""JSON Schemas of the wire messages, shipped as files in ``schemas/json``.

The server validates request bodies against them, ``/openapi.json`` embeds
them, and clients may use the files as they are.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import orjson
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


@cache
def _fast(name: str) -> Any:
    """A compiled validator for the common case: a valid instance.

    fastjsonschema is ~20x faster than jsonschema, which matters for sync
    pushes of thousands of records; jsonschema then explains what is wrong.
    Schemas with references to other files are checked with jsonschema only.
    """
    schema = load(name)
    if not _keywords(schema) <= _DRAFT7_KEYWORDS:
        return None  # e.g. prefixItems, $ref to another file: jsonschema only
    return fastjsonschema.compile({k: v for k, v in schema.items() if k != "$schema"})


# The keywords fastjsonschema implements as the 2020-12 validator does.
_DRAFT7_KEYWORDS = frozenset(
    "$schema $id title description type required additionalProperties properties "
    "pattern minLength maxLength minimum maximum enum const items minItems maxItems "
    "format".split()
)


def _keywords(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key == "properties":
                for sub in value.values():
                    found |= _keywords(sub)
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                found |= _keywords(value)
            elif isinstance(value, (dict, list)) and key not in ("enum", "const", "required"):
                found |= _keywords(value)
    elif isinstance(node, list):
        for item in node:
            found |= _keywords(item)
    return found


def problems(name: str, instance: Any) -> list[dict[str, str]]:
    """Every way ``instance`` breaks schema ``name``, as ``{"path", "message"}``.

    An empty list means valid.  Paths are JSON Pointers into the instance.
    """
    fast = _fast(name)
    if fast is not None:
        try:
            fast(instance)
            return []
        except fastjsonschema.JsonSchemaException:
            pass  # fall through for the detailed explanation
    found = []
    for error in sorted(validator(name).iter_errors(instance), key=lambda e: list(e.path)):
        pointer = "".join(f"/{part}" for part in error.path) or "/"
        message = error.message
        if any(str(part) in SECRET_FIELDS for part in error.path):
            # jsonschema quotes the value; never echo a secret back.
            message = f"does not meet '{error.validator}': {error.validator_value!r}"
        found.append({"path": pointer, "message": message})
    return found


def holds_nul(value: Any) -> bool:
    """Whether a decoded JSON value has a NUL character in any text (key or
    value).  No message field may: PostgreSQL refuses NUL in text.

    orjson writes NUL as ``\\u0000`` (a few microseconds for a record); only
    when that text appears, which a literal backslash can also cause, is the
    value walked."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:  # not JSON as orjson writes it (e.g. a huge int): walk it
        return _walk_nul(value)
    return b"\\u0000" in encoded and _walk_nul(value)


def _walk_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_walk_nul(k) or _walk_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_walk_nul(v) for v in value)
    return False
