"""The compiled validator path never accepts what the full JSON Schema validator refuses."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from schemas import messages

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.text(max_size=40), st.sampled_from(["yes", "open", "CC-BY-4.0", "1"]))


def instances(name: str) -> st.SearchStrategy[Any]:
    keys = list(messages.load(name).get("properties", {})) + ["unknown_field"]
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(keys), inner, max_size=3),
                          max_leaves=6)
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


FAST = [n for n in messages.names() if messages._fast(n) is not None]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.data())
def test_fast_and_full_validators_agree(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(FAST))
    instance = data.draw(instances(name))
    full = Draft202012Validator(messages.load(name), registry=messages._registry())
    assert (messages.problems(name, instance) == []) == full.is_valid(instance)


# Records one edit away from valid: where a compiled check and jsonschema
# could disagree (types, bounds, patterns, lengths, enums, missing and extra keys).
VALID = {
    "observation-record": {
        "id": "0b9a8e4c-1d2f-4a5b-8c7d-6e5f4a3b2c1d", "project_id": "1", "taxon_id": 2,
        "phenophase_id": "3", "status": "yes", "intensity": "lt5",
        "observed_at": "2026-03-01T09:30:00+01:00", "latitude": 52.1, "longitude": 5.2,
        "coordinate_uncertainty_m": 10, "geoprivacy": "open", "notes": "", "license": "CC0-1.0",
        "created_at": 1772353800000, "updated_at": None, "_status": "created", "_changed": "",
    },
    "photo-record": {
        "id": "abcdefABCDEF0123", "observation_id": "0b9a8e4c-1d2f-4a5b-8c7d-6e5f4a3b2c1d",
        "sha256": "0" * 64, "license": "CC-BY-4.0", "created_at": 1.5, "updated_at": None,
    },
    "sync-push": {"changes": {"observations": {"created": [{}], "updated": [], "deleted": ["a"]}},
                  "device_id": "phone"},
    "sync-push-response": {
        "ok": True, "results": {"observations": [
            {"id": "a", "status": "rejected", "code": "conflict", "message": "m",
             "server_record": {"id": "a"}, "details": [1]}]},
        "counts": {"applied": 0}, "experimentalRejectedIds": {"observations": ["a"]},
    },
}
tricky = st.one_of(
    scalars,
    st.sampled_from([
        True, False, 0, 1, -1, 1.0, 0.5, -0.0, 2**63, -(2**63) - 1, 89.999, 90, 90.0, 90.000001,
        -90, -90.5, 180, 180.5, -180, 1_000_000, 1_000_000.5, "", "0", "12", "12\n", "\n12",
        "1" * 18, "1" * 19, "x" * 32, "x" * 33, "x" * 40, "x" * 41, "yes", "YES", "no", "unknown",
        "open", "obscured", "CC-BY-4.0", "cc-by-4.0", "0" * 64, "0" * 63, "A" * 64,
        "abcdefABCDEF0123", "abcdefABCDEF012", "abcdefABCDEF0123\n",
        "0b9a8e4c-1d2f-4a5b-8c7d-6e5f4a3b2c1d", "0b9a8e4c-1d2f-4a5b-8c7d-6e5f4a3b2c1",
        "é" * 32, "é" * 33, [], {}, [1], {"a": 1},
        "applied", "rejected",
    ]),
    st.lists(scalars, max_size=2),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)


def _edges(schema: Any) -> list[Any]:
    """Values at and just past a subschema's bounds, lengths and patterns."""
    if not isinstance(schema, dict):
        return []
    out: list[Any] = list(schema.get("enum", []))
    out += [m + "\n" for m in out if isinstance(m, str)]
    for key in ("minLength", "maxLength"):
        if key in schema:
            n = schema[key]
            out += ["x" * n, "x" * (n + 1), "é" * max(n - 1, 0), "é" * (n + 1)]
    for key in ("minimum", "maximum"):
        if key in schema:
            b = schema[key]
            out += [b, float(b), b - 1, b + 1, math.nextafter(b, -math.inf),
                    math.nextafter(b, math.inf), bool(b)]
    return out


# Values of every JSON type, and the ones a type check could confuse.
CONFUSABLE = [None, True, False, 0, 1, -1, 1.0, 0.5, 2**63, "", "1", "12\n", "x", [], [1], {},
              {"a": 1}]


def _agree(name: str, instance: Any) -> None:
    full = Draft202012Validator(messages.load(name), registry=messages._registry())
    fast = messages._fast(name)
    assert fast is not None
    if fast(instance):
        assert full.is_valid(instance), instance
    assert (messages.problems(name, instance) == []) == full.is_valid(instance), instance


@pytest.mark.parametrize("name", sorted(VALID))
def test_compiled_check_agrees_with_jsonschema_on_every_edge(name: str) -> None:
    """Every column set to each of its edge values (and each confusable
    value), and every column left out: one edit from a valid instance."""
    properties = messages.load(name).get("properties", {})
    for key in [*properties, "other"]:
        for value in [*_edges(properties.get(key)), *CONFUSABLE]:
            _agree(name, {**VALID[name], key: value})
        _agree(name, {k: v for k, v in VALID[name].items() if k != key})


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _edit(instance: Any, path: tuple[Any, ...], op: str, value: Any, key: str) -> Any:
    if not path:
        return value if op == "set" else instance
    parent = instance
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "set":
        parent[last] = value
    elif op == "drop":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][key] = value
    return instance


@settings(max_examples=600, derandomize=True, deadline=None)
@given(st.data())
def test_compiled_check_agrees_with_jsonschema_near_valid_instances(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(VALID)))
    properties = messages.load(name).get("properties", {})
    instance = copy.deepcopy(VALID[name])
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from([*properties, "other"]))
        if isinstance(instance, dict) and data.draw(st.booleans()):  # a column: edge values
            value = data.draw(st.sampled_from(_edges(properties.get(key))) | tricky
                              if _edges(properties.get(key)) else tricky)
            if data.draw(st.integers(0, 4)) == 0:
                instance.pop(key, None)
            else:
                instance[key] = value
            continue
        path = data.draw(st.sampled_from(_paths(instance)))
        op = data.draw(st.sampled_from(["set", "set", "drop", "add"]))
        instance = _edit(instance, path, op, data.draw(tricky), key)
    _agree(name, instance)


def test_compiled_check_takes_valid_instances() -> None:
    """The fast path is used: a valid instance never falls through to jsonschema."""
    for name, instance in VALID.items():
        fast = messages._fast(name)
        assert fast is not None and fast(instance), name
    assert not messages._fast("observation-record")({**VALID["observation-record"],
                                                      "latitude": 91})
