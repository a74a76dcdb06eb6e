"""Semantic versions of releases.

A removed or renamed column is a major change; an added column, or new data
under the same columns, is a minor one.  Patch versions are for re-issues an
operator asks for explicitly (``--version``).
"""

from __future__ import annotations

import re

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")

FIRST = "1.0.0"


class VersionError(ValueError):
    """A requested version that semantic versioning does not allow."""


def parse(version: str) -> tuple[int, int, int]:
    match = _SEMVER.match(version)
    if not match:
        raise VersionError(f"{version!r} is not a version: write MAJOR.MINOR.PATCH, e.g. 1.2.0.")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def schema_change(previous: dict[str, list[str]], current: dict[str, list[str]]) -> str:
    """``major`` when a column of a previous table is gone, ``minor`` when one
    was added (or a table), else ``none``."""
    change = "none"
    for table, columns in previous.items():
        now = current.get(table)
        if now is None or set(columns) - set(now):
            return "major"
        if set(now) - set(columns):
            change = "minor"
    if set(current) - set(previous):
        change = "minor"
    return change


def next_version(previous: str | None, change: str) -> str:
    if previous is None:
        return FIRST
    major, minor, _ = parse(previous)
    if change == "major":
        return f"{major + 1}.0.0"
    return f"{major}.{minor + 1}.0"


def check_requested(requested: str, previous: str | None, change: str) -> str:
    """``requested`` if semantic versioning allows it after ``previous``."""
    wanted = parse(requested)
    if previous is None:
        return requested
    before = parse(previous)
    if wanted <= before:
        raise VersionError(
            f"Version {requested} is not after the latest release {previous}: "
            f"choose a higher one, e.g. {next_version(previous, change)}."
        )
    if change == "major" and wanted[0] <= before[0]:
        raise VersionError(
            f"Columns were removed or renamed since {previous}: that is a major change, "
            f"so the version must be {before[0] + 1}.0.0 or later."
        )
    return requested
