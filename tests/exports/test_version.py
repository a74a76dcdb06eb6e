from __future__ import annotations

import pytest

from exports.version import VersionError, check_requested, next_version, parse, schema_change


def test_next_versions() -> None:
    assert next_version(None, "none") == "1.0.0"
    assert next_version("1.4.2", "none") == "1.5.0"
    assert next_version("1.4.2", "minor") == "1.5.0"
    assert next_version("1.4.2", "major") == "2.0.0"


def test_a_removed_or_renamed_column_is_major_an_added_one_minor() -> None:
    before = {"observations": ["a", "b"], "taxa": ["x"]}
    assert schema_change(before, {"observations": ["a", "b"], "taxa": ["x"]}) == "none"
    assert schema_change(before, {"observations": ["a", "b", "c"], "taxa": ["x"]}) == "minor"
    assert schema_change(before, {"observations": ["a", "c"], "taxa": ["x"]}) == "major"
    assert schema_change(before, {"observations": ["a", "b"]}) == "major"
    assert schema_change(before, {**before, "media": ["m"]}) == "minor"


def test_requested_versions_must_move_forward_and_respect_major_changes() -> None:
    assert check_requested("1.0.1", "1.0.0", "none") == "1.0.1"
    assert check_requested("3.0.0", None, "none") == "3.0.0"
    for bad in ("1.0.0", "0.9.0"):
        with pytest.raises(VersionError, match="not after"):
            check_requested(bad, "1.0.0", "none")
    with pytest.raises(VersionError, match="major"):
        check_requested("1.1.0", "1.0.0", "major")
    with pytest.raises(VersionError):
        parse("v1.2")
