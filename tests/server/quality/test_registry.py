"""The registry: every check has a stable code and an explanation; the photo
codes are documented for the queue even though photo processing writes them."""

from __future__ import annotations

from pathlib import Path

from server.quality import CHECKS, PHOTO_CHECKS, describe, explanations

ROOT = Path(__file__).resolve().parents[3]

CODES = {
    "future_date", "implausible_date", "outside_project_area", "coarse_location",
    "phenophase_not_valid_for_taxon", "out_of_season", "conflicting_status",
    "photo_exif_time_mismatch", "photo_exif_location_mismatch", "photo_duplicate",
}


def test_codes_are_the_contract_and_each_is_explained() -> None:
    assert {c.code for c in (*CHECKS, *PHOTO_CHECKS)} == CODES
    assert all(c.run is not None for c in CHECKS)
    assert all(len(e["explanation"]) > 40 for e in explanations())
    assert describe("no_such_code").title == "No such code"


def test_every_code_is_documented() -> None:
    doc = (ROOT / "docs" / "review.md").read_text()
    for code in CODES:
        assert f"`{code}`" in doc, code
