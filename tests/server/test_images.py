from __future__ import annotations

import io

import exifread
import pytest
from PIL import Image

from server import images
from tests.factories_photos import encoded, garbage_exif_jpeg, jpeg, picture, png_bomb

LIMIT = 60_000_000


def jpeg_segments(data: bytes) -> list[int]:
    """Marker bytes of every segment before the image data."""
    markers, i = [], 2
    assert data[:2] == b"\xff\xd8"
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: metadata comes before it
            break
        markers.append(marker)
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return markers


def test_exif_fields_are_read() -> None:
    done = images.process(io.BytesIO(jpeg(orientation=1)), LIMIT)
    exif = done.exif
    assert exif.taken_at is not None and exif.taken_at.isoformat() == "2024-04-01T10:05:00+02:00"
    assert exif.latitude == pytest.approx(52.09, abs=1e-4)
    assert exif.longitude == pytest.approx(5.12, abs=1e-4)
    assert exif.altitude_m == pytest.approx(3.5)
    assert exif.accuracy_m == pytest.approx(8.0)
    assert (exif.make, exif.model, exif.error) == ("Phenocam", "PC-1", None)


def test_derivatives_have_orientation_applied_and_no_metadata_at_all() -> None:
    source = jpeg(size=(3000, 2000), orientation=6)
    assert 0xE1 in jpeg_segments(source)  # the source has EXIF and XMP
    done = images.process(io.BytesIO(source), LIMIT)
    assert (done.width, done.height) == (2000, 3000)
    assert sorted(done.derivatives) == [320, 1024, 2048]
    for edge, data in done.derivatives.items():
        with Image.open(io.BytesIO(data)) as derivative:
            assert derivative.format == "JPEG"
            assert max(derivative.size) == edge and derivative.size[1] > derivative.size[0]
        # Only JFIF (APP0), tables and frame headers: no APP1..APP15 (EXIF, XMP,
        # ICC), no comments.
        segments = jpeg_segments(data)
        assert not [m for m in segments if 0xE1 <= m <= 0xEF or m == 0xFE], segments
        assert exifread.process_file(io.BytesIO(data), details=False) == {}
        assert b"secret" not in data and b"Phenocam" not in data


def test_small_originals_are_not_enlarged() -> None:
    done = images.process(io.BytesIO(jpeg(size=(500, 400))), LIMIT)
    sizes = {edge: Image.open(io.BytesIO(d)).size for edge, d in done.derivatives.items()}
    assert sizes[2048] == sizes[1024] == (500, 400)
    assert max(sizes[320]) == 320


@pytest.mark.parametrize("fmt,kw", [("PNG", {}), ("WEBP", {"quality": 80})])
def test_png_and_webp_are_accepted(fmt: str, kw: dict[str, object]) -> None:
    data = encoded(fmt, **kw)
    found = images.inspect(io.BytesIO(data), LIMIT)
    assert found.format == fmt and (found.width, found.height) == (640, 480)
    assert sorted(images.process(io.BytesIO(data), LIMIT).derivatives) == [320, 1024, 2048]


def test_heic_as_iphones_send_it() -> None:
    out = io.BytesIO()
    picture((800, 600)).save(out, "HEIF", quality=80, exif=Image.Exif().tobytes())
    done = images.process(io.BytesIO(out.getvalue()), LIMIT)
    assert done.inspection.content_type == "image/heic"
    assert (done.width, done.height) == (800, 600)
    assert max(Image.open(io.BytesIO(done.derivatives[320])).size) == 320


def test_exif_of_heic_is_read() -> None:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif.get_ifd(0x8769)[0x9003] = "2024:04:01 10:05:00"
    picture((400, 300)).save(out, "HEIF", exif=exif.tobytes())
    done = images.process(io.BytesIO(out.getvalue()), LIMIT)
    assert done.exif.make == "Apple" and done.exif.taken_at is not None


def test_malformed_exif_is_reported_and_the_photo_still_processed() -> None:
    done = images.process(io.BytesIO(garbage_exif_jpeg()), LIMIT)
    assert done.exif.latitude is None and done.exif.taken_at is None
    assert sorted(done.derivatives) == [320, 1024, 2048]


class _CountingReads(io.BytesIO):
    reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def test_an_ifd_claiming_more_entries_than_the_block_holds_costs_bounded_work() -> None:
    # 16 bytes of TIFF whose first IFD claims 64,500 entries: unbounded,
    # exifread makes ~129,000 reads walking entries past the end of the data.
    claimed = b"II*\x00\x08\x00\x00\x00" + (64_500).to_bytes(2, "little") + bytes(6)
    handle = _CountingReads(claimed)
    found = images.read_exif(handle)
    assert handle.reads <= images.EXIF_READ_BUDGET
    assert found.error is not None and "malformed IFD" in found.error
    assert (found.latitude, found.taken_at) == (None, None)
    # and through the embedded block a HEIF decoder hands over, too
    found = images.read_exif(io.BytesIO(), embedded=b"Exif\x00\x00" + claimed)
    assert found.error is not None and "malformed IFD" in found.error


@pytest.mark.parametrize(
    "data,code",
    [
        (jpeg()[:-2000], "corrupt_image"),  # truncated
        (encoded("PNG")[:-3000], "corrupt_image"),
        (encoded("WEBP")[:-500], "corrupt_image"),
        (b"hello, I am a text file named photo.jpg\n" * 20, "not_an_image"),
        (b"", "not_an_image"),
        (png_bomb(8000, 8000), "image_too_large"),  # 64 MP, a few KB
        (encoded("GIF"), "not_an_image"),  # a real image, not a photo format
    ],
    ids=["truncated", "truncated-png", "truncated-webp", "text", "empty", "bomb", "gif"],
)
def test_bad_files_are_refused_with_a_code(data: bytes, code: str) -> None:
    for decode in (False, True):
        with pytest.raises(images.ImageRefused) as refused:
            images.inspect(io.BytesIO(data), LIMIT, decode=decode)
        assert refused.value.code == code
    with pytest.raises(images.ImageRefused):
        images.process(io.BytesIO(data), LIMIT)



def test_a_bomb_over_pillows_own_limit_is_refused_too() -> None:
    # 20000 x 20000 = 400 MP: Pillow's DecompressionBombError territory.
    with pytest.raises(images.ImageRefused) as refused:
        images.inspect(io.BytesIO(png_bomb(20000, 20000)), 10**10)
    assert refused.value.code == "image_too_large"


def test_perceptual_hash_sees_a_recompressed_copy_as_the_same_picture() -> None:
    a = images.process(io.BytesIO(jpeg(size=(1200, 900), seed=3, quality=95)), LIMIT)
    b = images.process(io.BytesIO(jpeg(size=(1000, 750), seed=3, quality=60)), LIMIT)
    c = images.process(io.BytesIO(jpeg(size=(1200, 900), seed=4)), LIMIT)
    assert a.sha256 != b.sha256
    assert images.hamming(a.perceptual_hash, b.perceptual_hash) <= 3
    assert images.hamming(a.perceptual_hash, c.perceptual_hash) > 10
