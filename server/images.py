"""Image work, blocking and pure: check a file is a photo we accept, read its
EXIF, make metadata-free derivatives and a perceptual hash.

Everything here runs in a worker thread (``anyio.to_thread``), never on the
event loop.  Pillow decodes (pillow-heif adds HEIC/HEIF as iPhones send it);
exifread reads EXIF, because it tolerates and reports broken EXIF instead of
failing the image; ImageHash gives the perceptual hash.

A refused file raises ``ImageRefused`` with a stable code and a message a
person can act on.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import mmap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, BinaryIO, cast

import exifread
from PIL import Image, ImageCms, UnidentifiedImageError
from pillow_heif import register_heif_opener

register_heif_opener()
# exifread logs every odd tag it skips; broken EXIF is reported in our result.
logging.getLogger("exifread").setLevel(logging.ERROR)
#: Reads exifread may make of one file.  A camera's EXIF takes well under a
#: thousand; exifread walks every entry an IFD claims, even past the end of the
#: data, so a 16-byte block claiming 65,535 entries per IFD would otherwise
#: cost seconds of CPU.
EXIF_READ_BUDGET = 20_000

#: Formats accepted (Pillow's names) and the content type each is stored as.
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic"}
#: Content types a client may announce in ``filetype``.
CONTENT_TYPES = frozenset({*FORMATS.values(), "image/heif", "image/jpg"})
#: Long edge of each derivative, largest first.
DERIVATIVE_SIZES = (2048, 1024, 320)
JPEG_QUALITY = 85
#: Bicubic (Pillow's ``thumbnail`` default, with its ``reducing_gap``): sharp
#: enough for photos scaled down 2x to 10x; Lanczos costs ~1.5x for little visible gain.
RESAMPLE = Image.Resampling.BICUBIC

# EXIF orientation -> the transposes that undo it.
_ORIENT: dict[int, tuple[Image.Transpose, ...]] = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class ImageRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Exif:
    """What the quality checks and the photo record use from EXIF."""

    taken_at: datetime | None = None  # aware when OffsetTimeOriginal was given
    latitude: float | None = None
    longitude: float | None = None
    altitude_m: float | None = None
    accuracy_m: float | None = None
    orientation: int = 1
    make: str | None = None
    model: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "altitude_m": self.altitude_m,
            "accuracy_m": self.accuracy_m,
            "orientation": self.orientation,
            "make": self.make,
            "model": self.model,
            "error": self.error,
        }


@dataclass
class Inspection:
    format: str
    content_type: str
    width: int
    height: int


@dataclass
class Processed:
    sha256: str
    size_bytes: int
    inspection: Inspection
    exif: Exif
    width: int  # after orientation
    height: int
    perceptual_hash: str  # 16 hex digits (64-bit dHash)
    derivatives: dict[int, bytes] = field(default_factory=dict)


def sha256_of(handle: IO[bytes]) -> tuple[str, int]:
    handle.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _open(handle: IO[bytes], max_pixels: int) -> Image.Image:
    handle.seek(0)
    try:
        with warnings.catch_warnings():
            # Pillow warns "Corrupt EXIF data" while opening some JPEGs; broken
            # EXIF is exifread's to report, the pixels may be fine.
            warnings.filterwarnings("ignore", "Corrupt EXIF", UserWarning)
            image = Image.open(handle, formats=list(FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(
            "image_too_large", f"The image has more than {max_pixels} pixels."
        ) from None
    except UnidentifiedImageError:
        raise ImageRefused(
            "not_an_image", "The file is not a JPEG, PNG, WebP or HEIC/HEIF image."
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRefused("corrupt_image", f"The image cannot be read: {exc}.") from None
    width, height = image.size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise ImageRefused(
            "image_too_large",
            f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted.",
        )
    return image


def _decode(image: Image.Image, draft: tuple[int, int] | None) -> Image.Image:
    try:
        if draft is not None and image.format == "JPEG":
            image.draft("RGB", draft)
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused("image_too_large", "The image has too many pixels.") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRefused(
            "corrupt_image", f"The image is truncated or damaged: {exc}."
        ) from None
    return image


def inspect(handle: IO[bytes], max_pixels: int, *, decode: bool = False) -> Inspection:
    """Check the file is an accepted image within the pixel limit and is whole.

    Without ``decode`` this reads headers and checks the file's structure ends
    where it should (JPEG: an end-of-image marker after the scan data; PNG:
    IEND; WebP: the RIFF length): cheap enough for the request that completes
    an upload, and it catches truncation.  ``decode=True`` decodes every pixel
    (the processing job does).
    """
    image = _open(handle, max_pixels)
    fmt = image.format or ""
    found = Inspection(fmt, FORMATS[fmt], *image.size)
    if decode:
        _decode(image, (1, 1))
    else:
        with _contents(handle) as data:
            complete = _structure_complete(fmt, data)
        if not complete:
            raise ImageRefused(
                "corrupt_image", f"The {fmt} file is truncated: its end is missing."
            )
    image.close()
    return found


@contextlib.contextmanager
def _contents(handle: IO[bytes]) -> Iterator[bytes | mmap.mmap]:
    """The file's bytes: mapped when it is a real file (only the pages looked
    at are read, and a 20 MB file costs no 20 MB of memory), else read."""
    try:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        handle.seek(0)
        yield handle.read()
        return
    with mapped:
        yield mapped


def _structure_complete(fmt: str, data: bytes | mmap.mmap) -> bool:
    if fmt == "JPEG":
        # Entropy-coded data never holds FF D9 (an FF there is stuffed with
        # 00), so an end-of-image marker after the first scan means the scan
        # data is complete; makers' trailers after it are fine.  Searched from
        # the end: the marker is (nearly) the file's last two bytes.
        sos = _first_scan(data)
        return sos > 0 and data.rfind(b"\xff\xd9", sos) != -1
    if fmt == "PNG":
        return data.rfind(b"IEND\xaeB`\x82") != -1
    if fmt == "WEBP":
        return len(data) >= 8 + int.from_bytes(data[4:8], "little")
    return True  # HEIF: libheif checked the boxes on open; the job decodes it all


def _first_scan(data: bytes | mmap.mmap) -> int:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return -1
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:
            return i
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return -1


def read_exif(handle: BinaryIO, embedded: bytes | None = None) -> Exif:
    """EXIF fields we use; broken EXIF gives an empty result with ``error`` set.

    ``embedded`` is the raw EXIF block the decoder found: for HEIF, exifread's
    own box parser fails on some files, and the block is read as TIFF instead.
    """
    if embedded:
        block = embedded[6:] if embedded.startswith(b"Exif\x00\x00") else embedded
        if block[:4] in (b"II*\x00", b"MM\x00*"):
            return read_exif(io.BytesIO(block))
    handle.seek(0)
    try:
        tags = exifread.process_file(
            cast(BinaryIO, _BoundedReader(handle, EXIF_READ_BUDGET)),
            details=False, extract_thumbnail=False)
    except _ReadBudgetSpent:
        return Exif(error="EXIF claims more entries than it holds (malformed IFD); ignored")
    except Exception as exc:  # exifread raises many kinds on garbage
        return Exif(error=f"{type(exc).__name__}: {exc}"[:200])
    out = Exif()
    try:
        out.orientation = _int(tags.get("Image Orientation"), 1)
        out.make = _text(tags.get("Image Make"))
        out.model = _text(tags.get("Image Model"))
        out.taken_at = _taken_at(tags)
        lat = _dms(tags.get("GPS GPSLatitude"))
        lon = _dms(tags.get("GPS GPSLongitude"))
        if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
            if _text(tags.get("GPS GPSLatitudeRef")) == "S":
                lat = -lat
            if _text(tags.get("GPS GPSLongitudeRef")) == "W":
                lon = -lon
            out.latitude, out.longitude = lat, lon
        altitude = _float(tags.get("GPS GPSAltitude"))
        if altitude is not None and _int(tags.get("GPS GPSAltitudeRef"), 0) == 1:
            altitude = -altitude
        out.altitude_m = altitude
        # exifread 3.5 does not name GPSHPositioningError (0x1F) yet.
        out.accuracy_m = _float(
            tags.get("GPS GPSHPositioningError") or tags.get("GPS Tag 0x001F")
        )
    except Exception as exc:
        return Exif(error=f"{type(exc).__name__}: {exc}"[:200])
    if out.orientation not in range(1, 9):
        out.orientation = 1
    return out


class _ReadBudgetSpent(Exception):
    pass


class _BoundedReader:
    """The file as exifread uses it (read, seek, tell), with a budget of reads."""

    def __init__(self, handle: BinaryIO, budget: int) -> None:
        self._handle = handle
        self._left = budget

    def read(self, size: int = -1) -> bytes:
        self._left -= 1
        if self._left < 0:
            raise _ReadBudgetSpent
        return self._handle.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()


def _values(tag: Any) -> list[Any]:
    if tag is None:
        return []
    values = tag.values
    return list(values) if isinstance(values, list | tuple) else [values]


def _text(tag: Any) -> str | None:
    if tag is None:
        return None
    text = str(tag.printable if hasattr(tag, "printable") else tag).strip().strip("\x00")
    return text[:64] or None


def _int(tag: Any, default: int) -> int:
    values = _values(tag)
    try:
        return int(values[0])
    except (IndexError, TypeError, ValueError):
        return default


def _ratio(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _float(tag: Any) -> float | None:
    values = _values(tag)
    return _ratio(values[0]) if values else None


def _dms(tag: Any) -> float | None:
    parts = [_ratio(v) for v in _values(tag)]
    if len(parts) != 3 or None in parts:
        return None
    d, m, s = (p for p in parts if p is not None)
    return d + m / 60 + s / 3600


def _taken_at(tags: dict[str, Any]) -> datetime | None:
    raw = _text(tags.get("EXIF DateTimeOriginal")) or _text(tags.get("Image DateTime"))
    if not raw:
        return None
    try:
        taken = datetime.strptime(raw[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = _text(tags.get("EXIF OffsetTimeOriginal")) or _text(tags.get("EXIF OffsetTime"))
    if offset:
        try:
            return datetime.fromisoformat(taken.isoformat() + offset)
        except ValueError:
            return taken
    return taken


def _pixels(image: Image.Image) -> Image.Image:
    """RGB or L pixels (alpha dropped, palettes expanded), before resampling."""
    if image.mode in ("RGB", "L"):
        return image
    if "A" in image.mode or image.mode == "P":
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=image.mode)
            if converted is not None:
                image = converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: keep the pixels as they are
    return image


def _fit(size: tuple[int, int], edge: int) -> tuple[int, int] | None:
    """The size a ``thumbnail((edge, edge))`` of ``size`` has; None when it fits."""
    width, height = size
    if max(width, height) <= edge:
        return None
    scale = edge / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _jpeg(image: Image.Image) -> bytes:
    image.info = {}  # no EXIF, XMP, ICC or comments travel into a derivative
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def perceptual_hash(image: Image.Image) -> str:
    import imagehash  # and numpy: loaded by the first photo job, not at start

    return str(imagehash.dhash(image))


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def hash_bands(phash: str) -> tuple[int, int, int, int]:
    value = int(phash, 16)
    return (value >> 48 & 0xFFFF, value >> 32 & 0xFFFF, value >> 16 & 0xFFFF, value & 0xFFFF)


def process(
    handle: IO[bytes], max_pixels: int, sizes: tuple[int, ...] = DERIVATIVE_SIZES
) -> Processed:
    """Everything the photo job needs, in one pass over the file."""
    sha256, size = sha256_of(handle)
    image = _open(handle, max_pixels)
    fmt = image.format or ""
    inspection = Inspection(fmt, FORMATS[fmt], *image.size)
    embedded = image.info.get("exif") if fmt == "HEIF" else None
    exif = read_exif(cast(BinaryIO, handle), embedded if isinstance(embedded, bytes) else None)
    # JPEG: decode at the smallest scale (1/2, 1/4, 1/8) that still covers the
    # largest derivative; the smaller ones are made from the larger, the image is
    # decoded once, and the per-pixel work (colour profile, orientation) is done
    # on the largest derivative, not on the original.
    image = _decode(image, _fit(image.size, max(sizes)))
    icc = image.info.get("icc_profile")
    image = _pixels(image)
    derivatives: dict[int, bytes] = {}
    current = image
    finished = False
    for edge in sorted(sizes, reverse=True):
        if max(current.size) > edge:
            current.thumbnail((edge, edge), RESAMPLE)  # in place: no copy of the original
        if not finished:
            current = _to_srgb(current, icc if isinstance(icc, bytes) else None)
            # libheif applies HEIF's own rotation on decode; EXIF orientation
            # is for JPEG & co.
            if fmt != "HEIF":
                for step in _ORIENT.get(exif.orientation, ()):
                    current = current.transpose(step)
            finished = True
        derivatives[edge] = _jpeg(current)
    width, height = inspection.width, inspection.height
    if fmt != "HEIF" and exif.orientation >= 5:
        width, height = height, width
    return Processed(
        sha256=sha256,
        size_bytes=size,
        inspection=inspection,
        exif=exif,
        width=width,
        height=height,
        perceptual_hash=perceptual_hash(current),
        derivatives=derivatives,
    )
