"""Factories for observations, photo records and test images (made here with
Pillow, EXIF written through Pillow's Exif API; nothing is downloaded)."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import zlib
from datetime import UTC, datetime
from typing import Any

from PIL import Image, ImageDraw
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from schemas.observation import Status
from server import jobs
from server.models.accounts import User
from server.models.observations import Observation, Photo
from server.models.reference import Phenophase, Project, Taxon
from server.models.sequence import next_seq
from tests.factories import make_project

_counter = itertools.count(1)
OBSERVED_AT = datetime(2024, 4, 1, 8, 0, tzinfo=UTC)
LAT, LON = 52.09, 5.12  # Utrecht


async def make_observation(
    user: User, project: Project | None = None, **overrides: Any
) -> Observation:
    n = next(_counter)
    project = project or await make_project()
    taxon, _ = await Taxon.get_or_create(
        scientific_name="Corylus avellana", defaults={"group": "shrub"}
    )
    phase, _ = await Phenophase.get_or_create(
        code="open_flowers", defaults={"name": "Open flowers", "groups": ["shrub"]}
    )
    async with in_transaction() as conn:
        seq = await next_seq(conn)
        values: dict[str, Any] = {
            "id": f"obs-{n:06d}",
            "user": user,
            "project": project,
            "taxon": taxon,
            "phenophase": phase,
            "status": Status.YES,
            "observed_at": OBSERVED_AT,
            "observed_utc_offset_min": 120,
            "latitude": LAT,
            "longitude": LON,
            "created_seq": seq,
            "updated_seq": seq,
        }
        values.update(overrides)
        return await Observation.create(**values, using_db=conn)


async def make_photo(
    user: User, observation: Observation | None = None, **overrides: Any
) -> Photo:
    """A photo record as sync would create it (upload state ``pending``)."""
    n = next(_counter)
    observation = observation or await make_observation(user)
    async with in_transaction() as conn:
        seq = await next_seq(conn)
        values: dict[str, Any] = {
            "id": f"photo-{n:06d}",
            "observation": observation,
            "user": user,
            "created_seq": seq,
            "updated_seq": seq,
        }
        values.update(overrides)
        return await Photo.create(**values, using_db=conn)


def picture(size: tuple[int, int] = (640, 480), seed: int = 1) -> Image.Image:
    """A textured picture (shapes on a gradient): perceptual hashes differ by seed."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(12):  # the same picture at any size
        x, y = rng.random() * w, rng.random() * h
        r = (0.08 + rng.random() * 0.17) * w
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return image


def exif_block(
    taken: str | None = "2024:04:01 10:05:00",
    offset: str | None = "+02:00",
    lat: float | None = LAT,
    lon: float | None = LON,
    orientation: int | None = None,
    make: str = "Phenocam",
    model: str = "PC-1",
) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    if orientation is not None:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    if taken is not None:
        sub[0x9003] = taken
    if offset is not None:
        sub[0x9011] = offset
    if lat is not None and lon is not None:
        gps = exif.get_ifd(0x8825)
        gps[1] = "N" if lat >= 0 else "S"
        gps[2] = _dms(abs(lat))
        gps[3] = "E" if lon >= 0 else "W"
        gps[4] = _dms(abs(lon))
        gps[5] = 0
        gps[6] = 3.5
        gps[0x1F] = 8.0
    return exif.tobytes()


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 4)
    return (float(degrees), float(minutes), seconds)


def jpeg(
    size: tuple[int, int] = (640, 480), seed: int = 1, exif: bytes | None = None,
    quality: int = 90, **exif_fields: Any,
) -> bytes:
    out = io.BytesIO()
    block = exif if exif is not None else exif_block(**exif_fields)
    picture(size, seed).save(out, "JPEG", quality=quality, exif=block,
                             xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>secret</x:xmpmeta>")
    return out.getvalue()


def encoded(fmt: str, size: tuple[int, int] = (640, 480), seed: int = 1, **kw: Any) -> bytes:
    out = io.BytesIO()
    picture(size, seed).save(out, fmt, **kw)
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A real PNG of ``width`` x ``height`` black pixels that compresses to a few KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + grey pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(
        b"IEND", b""
    )


def garbage_exif_jpeg() -> bytes:
    """A JPEG whose EXIF IFD offsets point far outside the block."""
    tiff = b"II*\x00" + (0x7FFFFFF0).to_bytes(4, "little") + b"\x05\x00" + b"\xff" * 60
    return jpeg(exif=b"Exif\x00\x00" + tiff)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def run_jobs(app: Starlette) -> int:
    return await jobs.drain(app.state.database, app.state.jobs.handlers)
