"""Property-based: EXIF (server/images.py ``read_exif``) from any bytes and
any tag values gives fields in range or an ``error``, never an exception;
well-formed values read back as written."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from server import images
from tests.factories_photos import _dms
from tests.properties import FAST, SCALE

#: Text as cameras write it (Pillow writes EXIF ASCII as latin-1 bytes).
TAG_TEXT = st.text(st.characters(max_codepoint=0xFF), max_size=30)
RATIONAL = st.floats(min_value=0, max_value=1e6, allow_nan=False) | st.integers(0, 2**31)
SMALL_JPEG = io.BytesIO()
Image.new("RGB", (8, 8)).save(SMALL_JPEG, "JPEG")


def jpeg_with(exif: Image.Exif) -> io.BytesIO:
    out = io.BytesIO()
    Image.open(io.BytesIO(SMALL_JPEG.getvalue())).save(out, "JPEG", exif=exif.tobytes())
    out.seek(0)
    return out


def assert_sane(found: images.Exif) -> None:
    json.dumps(found.as_json(), allow_nan=False)  # stored as JSON
    assert found.orientation in range(1, 9)
    for text in (found.make, found.model):
        assert text is None or ("\x00" not in text and len(text) <= 64)
    if found.latitude is not None or found.longitude is not None:
        assert found.latitude is not None and -90 <= found.latitude <= 90
        assert found.longitude is not None and -180 <= found.longitude <= 180


# An IFD may claim far more entries than the block holds; read_exif bounds the
# reads exifread makes (test_images.py), so every example stays cheap.
@settings(FAST, max_examples=40 * SCALE)
@given(st.binary(max_size=300) | st.binary(max_size=200).map(
    lambda b: b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + b))
def test_any_bytes_give_fields_or_an_error(data: bytes) -> None:
    assert_sane(images.read_exif(io.BytesIO(data), embedded=data))


@FAST
@given(
    make=TAG_TEXT, taken=TAG_TEXT, offset=TAG_TEXT,
    orientation=st.integers(0, 65535),
    lat=st.tuples(RATIONAL, RATIONAL, RATIONAL), lon=st.tuples(RATIONAL, RATIONAL, RATIONAL),
    lat_ref=TAG_TEXT, lon_ref=TAG_TEXT, altitude=RATIONAL, altitude_ref=st.integers(0, 255),
)
def test_any_tag_values_give_fields_in_range(
    make: str, taken: str, offset: str, orientation: int,
    lat: tuple[float, float, float], lon: tuple[float, float, float],
    lat_ref: str, lon_ref: str, altitude: float, altitude_ref: int,
) -> None:
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0x9011] = taken, offset
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = lat_ref, lat, lon_ref, lon
    gps[5], gps[6] = altitude_ref, altitude
    assert_sane(images.read_exif(jpeg_with(exif)))


@FAST
@given(
    taken=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
    offset_min=st.integers(-14 * 60, 14 * 60),
    lat=st.floats(-89.99, 89.99), lon=st.floats(-179.99, 179.99),
    orientation=st.integers(1, 8),
)
def test_written_fields_read_back(
    taken: datetime, offset_min: int, lat: float, lon: float, orientation: int,
) -> None:
    taken = taken.replace(microsecond=0)
    sign = "+" if offset_min >= 0 else "-"
    offset = f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    exif = Image.Exif()
    exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0x9011] = taken.strftime("%Y:%m:%d %H:%M:%S"), offset
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = ("N" if lat >= 0 else "S"), _dms(abs(lat))
    gps[3], gps[4] = ("E" if lon >= 0 else "W"), _dms(abs(lon))
    found = images.read_exif(jpeg_with(exif))
    assert found.error is None
    assert found.orientation == orientation
    zone = timezone(timedelta(minutes=offset_min))
    assert found.taken_at == taken.replace(tzinfo=zone)
    assert found.taken_at is not None and found.taken_at.astimezone(UTC)
    assert found.latitude is not None and abs(found.latitude - lat) < 1e-4
    assert found.longitude is not None and abs(found.longitude - lon) < 1e-4
