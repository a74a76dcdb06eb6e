"""The fast validator path never accepts what the full JSON Schema validator refuses."""

from __future__ import annotations

from typing import Any

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
