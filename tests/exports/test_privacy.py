from __future__ import annotations

import pyarrow as pa
import pytest

from exports.privacy import WITHHELD_PRIVATE, Privacy


def test_pseudonyms_are_stable_keyed_and_distinct() -> None:
    a = Privacy(b"key-one")
    assert a.pseudonym(7) == Privacy(b"key-one").pseudonym(7)
    assert a.pseudonym(7) != a.pseudonym(8)
    assert a.pseudonym(7) != Privacy(b"key-two").pseudonym(7)
    users = pa.array([3, 7, 3], pa.int64())
    assert a.pseudonyms(users).to_pylist() == [a.pseudonym(3), a.pseudonym(7), a.pseudonym(3)]


def test_obscured_and_sensitive_snap_to_the_cell_centre_and_private_loses_coordinates() -> None:
    privacy = Privacy(b"k", grid_degrees=0.1)
    lat, lon, unc, withheld, generalised = privacy.apply(
        pa.array([52.0907374, 52.0907374, 52.0907374, -33.8688197, 52.0907374]),
        pa.array([5.1214201, 5.1214201, 5.1214201, 151.2092955, 5.1214201]),
        pa.array([12.0, None, 5.0, 30.0, 3.0]),
        pa.array(["open", "obscured", "private", "obscured", "open"]),
        pa.array([False, False, True, False, True]),
    )
    assert lat.to_pylist() == [52.0907374, 52.05, None, -33.85, 52.05]
    assert lon.to_pylist() == [5.1214201, 5.15, None, 151.25, 5.15]
    radius = privacy.cell_radius_m
    assert unc[1].as_py() >= radius and unc[3].as_py() >= radius + 30
    assert unc.to_pylist()[0] == 12.0 and unc[2].as_py() is None
    assert withheld.to_pylist() == [None, None, WITHHELD_PRIVATE, None, None]
    notes = generalised.to_pylist()
    assert notes[0] is None and notes[2] is None
    assert "geoprivacy obscured" in notes[1] and "sensitive taxon" in notes[4]
    # A circle of the widened radius around the centre covers the true point.
    assert radius > 0.05 * 110_574


def test_grid_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Privacy(b"k", grid_degrees=0)
