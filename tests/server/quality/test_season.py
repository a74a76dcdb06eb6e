"""Robust, circular season statistics."""

from __future__ import annotations

from server.quality.season import MIN_SCALE_DAYS, offset, season


def test_median_and_mad_resist_outliers() -> None:
    days = [100.0 + d for d in range(-10, 11)] + [300.0, 310.0]
    found = season(days)
    assert abs(found.center - 100) <= 1
    assert MIN_SCALE_DAYS <= found.scale < 12


def test_a_season_across_new_year_is_centered_on_it() -> None:
    days = [float(d) for d in (355, 358, 360, 362, 364, 1, 3, 5, 8, 10)]
    found = season(days)
    assert abs(offset(found.center, 365.25)) < 4
    assert abs(offset(2, found.center)) < 10 and abs(offset(180, found.center)) > 150
