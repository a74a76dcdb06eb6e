"""JSON Schemas of the wire messages, shipped as files in ``schemas/json``.

The server validates request bodies against them, ``/openapi.json`` embeds
them, and clients may use the files as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

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
def _fast(name: str) -> Callable[[Any], bool] | None:
    """A compiled check for the common case, a valid instance: True means
    valid; False means "let jsonschema look" (it explains, or finds nothing).

    A sync push checks every record (500 a batch) against its schema.  The
    schema is turned once into one plain Python function (no call per
    property), about 2x faster than fastjsonschema and 100x faster than
    jsonschema.  It covers the keywords our schemas use and is exact or
    stricter on each (an integral float for "integer" is left to jsonschema,
    say); a schema with another keyword (``prefixItems``, ``$ref``) is
    checked by jsonschema alone.  tests/schemas/test_messages.py holds it to
    jsonschema.
    """
    try:
        return _Compiler().function(load(name))
    except _Unsupported:
        return None


class _Unsupported(Exception):
    """A keyword the compiled check does not implement."""


# Keywords that do not constrain an instance (no format checker is configured,
# so ``format`` is an annotation for jsonschema too).
_ANNOTATIONS = frozenset("$schema $id $comment title description default examples format".split())
# Exact Python types as a JSON decoder makes them: a bool is never a number
# here, and an integral float is not taken for an "integer".
_JSON_TYPES = {
    "null": ("NoneType",), "boolean": ("bool",), "integer": ("int",),
    "number": ("int", "float"), "string": ("str",), "array": ("list",), "object": ("dict",),
}


class _Compiler:
    """Writes the source of ``check(value) -> bool`` for a schema.  Every
    failed constraint is ``return False``; constants (patterns, sets) are
    names in the function's globals."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {"NoneType": type(None), "MISSING": object()}
        self.lines: list[str] = []
        self.count = 0

    def function(self, schema: Any) -> Callable[[Any], bool]:
        self.emit(1, schema, "value")
        source = "def check(value):\n" + "\n".join(self.lines) + "\n    return True\n"
        exec(compile(source, "<schema check>", "exec"), self.names)  # noqa: S102
        return self.names["check"]

    def new(self, prefix: str, value: Any = None) -> str:
        self.count += 1
        name = f"{prefix}{self.count}"
        if value is not None:
            self.names[name] = value
        return name

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def emit(self, depth: int, schema: Any, var: str) -> None:
        if schema is True or schema == {}:
            return
        if not isinstance(schema, dict):
            raise _Unsupported(repr(schema))
        s = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
        declared = s.pop("type", None)
        wanted = [declared] if isinstance(declared, str) else declared or []
        types = list(dict.fromkeys(t for n in wanted for t in _JSON_TYPES[n]))
        if "enum" in s or "const" in s:
            members = s.pop("enum") if "enum" in s else [s.pop("const")]
            # JSON equality (1 != True): strings, booleans and null are taken
            # here, any other value is left to jsonschema.
            strings = self.new("E", frozenset(m for m in members if isinstance(m, str)))
            others = "".join(f" or {var} is {m!r}" for m in (None, True, False)
                             if any(x is m for x in members))
            self.line(depth, f"if not ((type({var}) is str and {var} in {strings}){others}):")
            self.line(depth + 1, "return False")
        number = self.number(s, var)
        per_type = {"str": self.text(s, var), "int": number, "float": number,
                    "list": self.array(s, var), "dict": self.object(s, var)}
        if s:
            raise _Unsupported(", ".join(sorted(s)))
        # Without "type", the keywords of a type apply to values of that type
        # and any value is valid otherwise.
        branches = [(x, body) for x, body in per_type.items()
                    if body and (declared is None or x in types)]
        plain = [x for x in types if not per_type.get(x)]
        if not branches and not plain:
            return
        t = self.new("t")
        self.line(depth, f"{t} = type({var})")
        if not branches:
            self.line(depth, "if " + " and ".join(f"{t} is not {x}" for x in plain) + ":")
            self.line(depth + 1, "return False")
            return
        keyword = "if"
        for x, body in branches:
            self.line(depth, f"{keyword} {t} is {x}:")
            self.lines += ["    " * (depth + 1) + b for b in body]
            keyword = "elif"
        if declared is not None:
            if plain:
                self.line(depth, f"{keyword} " + " or ".join(f"{t} is {x}" for x in plain) + ":")
                self.line(depth + 1, "pass")
            self.line(depth, "else:" if keyword == "elif" or plain else "if True:")
            self.line(depth + 1, "return False")

    def sub(self, schema: Any, var: str) -> list[str]:
        """The lines of a nested schema, indented from column 0."""
        saved, self.lines = self.lines, []
        self.emit(0, schema, var)
        out, self.lines = self.lines, saved
        return out

    def text(self, s: dict[str, Any], var: str) -> list[str]:
        out = []
        if "pattern" in s:  # jsonschema uses re.search
            pattern = self.new("P", re.compile(s.pop("pattern")))
            out += [f"if {pattern}.search({var}) is None:", "    return False"]
        if "minLength" in s:  # code points, as jsonschema counts
            out += [f"if len({var}) < {int(s.pop('minLength'))}:", "    return False"]
        if "maxLength" in s:
            out += [f"if len({var}) > {int(s.pop('maxLength'))}:", "    return False"]
        return out

    def number(self, s: dict[str, Any], var: str) -> list[str]:
        out = []
        for key, op in (("minimum", "<"), ("maximum", ">")):
            if key in s:
                bound = self.new("N", s.pop(key))
                out += [f"if {var} {op} {bound}:", "    return False"]
        return out

    def array(self, s: dict[str, Any], var: str) -> list[str]:
        out = []
        if "minItems" in s:
            out += [f"if len({var}) < {int(s.pop('minItems'))}:", "    return False"]
        if "maxItems" in s:
            out += [f"if len({var}) > {int(s.pop('maxItems'))}:", "    return False"]
        if "items" in s:
            item = self.new("i")
            body = self.sub(s.pop("items"), item)
            if body:
                out += [f"for {item} in {var}:", *("    " + b for b in body)]
        return out

    def object(self, s: dict[str, Any], var: str) -> list[str]:
        out: list[str] = []
        properties = s.pop("properties", {})
        required = frozenset(s.pop("required", ()))
        extra = s.pop("additionalProperties", True)
        if required:
            out += [f"if not {var}.keys() >= {self.new('R', required)}:", "    return False"]
        allowed = self.new("A", frozenset(properties))
        if extra is False:
            out += [f"if not {var}.keys() <= {allowed}:", "    return False"]
        elif extra is not True and extra != {}:
            key, item = self.new("k"), self.new("x")
            body = self.sub(extra, item)
            out += [f"for {key}, {item} in {var}.items():",
                    f"    if {key} not in {allowed}:",
                    *("        " + b for b in body)]
        for name, sub in properties.items():
            item = self.new("p")
            body = self.sub(sub, item)
            if body:
                out += [f"{item} = {var}.get({name!r}, MISSING)",
                        f"if {item} is not MISSING:", *("    " + b for b in body)]
        return out


def problems(name: str, instance: Any) -> list[dict[str, str]]:
    """Every way ``instance`` breaks schema ``name``, as ``{"path", "message"}``.

    An empty list means valid.  Paths are JSON Pointers into the instance.
    """
    fast = _fast(name)
    if fast is not None and fast(instance):
        return []
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
