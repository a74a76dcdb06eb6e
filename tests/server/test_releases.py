"""A release, read back by independent readers: pyarrow, pandas, DuckDB,
frictionless, python-dwca-reader and ``sha256sum -c``; privacy proven by
scanning every byte of every file."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dwca.read import DwCAReader
from frictionless import Package
from starlette.applications import Starlette

from exports import schema
from exports.parquet import TableWriter
from schemas import errors
from schemas.dataset import SCHEMA_VERSION
from server.models.observations import Observation
from server.models.reference import Project
from server.models.releases import Release
from server.releases import publish, publish_job, release_dir
from tests.factories import make_project, make_user
from tests.factories_observations import (
    make_flag,
    make_observation,
    make_phenophase,
    make_photo,
    make_taxon,
)

# Precise coordinates of records that must never appear in a release.
SECRET_POINTS = {
    "obscured": (52.3717204, 4.8951679),
    "private": (51.9225107, 4.4791723),
    "sensitive": (53.2193835, 6.5665018),
}


@pytest.fixture
async def releases(db: Starlette) -> AsyncIterator[Path]:
    folder = db.state.settings.releases_dir
    shutil.rmtree(folder, ignore_errors=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


async def sha256sum(folder: Path) -> subprocess.CompletedProcess[str]:
    """``sha256sum -c SHA256SUMS`` in the release folder, as a user would run it."""
    return await asyncio.to_thread(
        subprocess.run, ["sha256sum", "-c", "SHA256SUMS"], cwd=folder,
        capture_output=True, text=True,
    )


@dataclass
class World:
    project: Project
    open_obs: Observation
    deleted: Observation
    rejected: Observation
    corrected: Observation


async def make_world() -> World:
    project = await make_project(publish_notes=False)
    noted = await make_project(publish_notes=True)
    user, _ = await make_user(project=project)
    other, _ = await make_user(project=project)
    oak = await make_taxon(scientific_name="Quercus robur")
    hazel = await make_taxon(scientific_name="Corylus avellana")
    orchid = await make_taxon(scientific_name="Ophrys apifera", sensitive=True)
    flowers = await make_phenophase(code="open_flowers", name="Open flowers")
    leaves = await make_phenophase(code="breaking_leaf_buds", name="Breaking leaf buds",
                                   ppo_iri=None)
    t = datetime(2024, 3, 14, 9, 30, tzinfo=UTC)
    open_obs = await make_observation(user, project, hazel, flowers, observed_at=t,
                                      notes="secret garden of Mrs Jansen", intensity="50-74%")
    # Same instant, earlier name: sorts first.
    await make_observation(other, project, oak, flowers, observed_at=t, status="no")
    lat, lon = SECRET_POINTS["obscured"]
    await make_observation(user, project, oak, leaves, geoprivacy="obscured",
                           latitude=lat, longitude=lon,
                           observed_at=datetime(2024, 4, 2, 8, tzinfo=UTC))
    lat, lon = SECRET_POINTS["private"]
    private = await make_observation(user, project, hazel, leaves, geoprivacy="private",
                                     latitude=lat, longitude=lon,
                                     observed_at=datetime(2024, 4, 3, 8, tzinfo=UTC))
    lat, lon = SECRET_POINTS["sensitive"]
    await make_observation(other, project, orchid, flowers, latitude=lat, longitude=lon,
                           observed_at=datetime(2023, 6, 20, 8, tzinfo=UTC))
    await make_observation(other, noted, oak, flowers, notes="first flowers by the pond",
                           observed_at=datetime(2023, 5, 1, 8, tzinfo=UTC))
    # 23:30 UTC on 31 Dec with +01:00 is 2025 in local time.
    await make_observation(user, project, oak, leaves,
                           observed_at=datetime(2024, 12, 31, 23, 30, tzinfo=UTC))
    deleted = await make_observation(user, project, oak, leaves, is_deleted=True)
    rejected = await make_observation(user, project, oak, leaves, review_status="rejected")
    corrected = await make_observation(user, project, oak, leaves, verified_taxon=hazel,
                                       verified_phenophase=flowers, review_status="verified",
                                       observed_at=datetime(2024, 3, 20, 10, tzinfo=UTC))
    await make_flag(corrected, "coarse_location")
    await make_flag(corrected, "out_of_season")
    await make_photo(open_obs)
    await make_photo(open_obs, license="all-rights-reserved")
    await make_photo(open_obs, upload_state="processing")
    await make_photo(private)
    await make_photo(rejected)
    # Phenometrics: a no, then yes twice, then a no at one site.
    site = {"latitude": 52.0, "longitude": 5.0}
    for day, status in ((60, "no"), (70, "yes"), (75, "yes"), (90, "no")):
        when = datetime(2022, 1, 1, 12, tzinfo=UTC) + pd.Timedelta(days=day - 1)
        await make_observation(user, project, hazel, flowers, status=status,
                               observed_at=when, **site)
    return World(project, open_obs, deleted, rejected, corrected)


async def test_a_release_reads_back_in_every_independent_reader(
    releases: Path, db: Starlette
) -> None:
    world = await make_world()
    stages: list[str] = []
    release = await publish(db.state.settings, db.state.database,
                            progress=lambda stage, rows: stages.append(stage))
    assert release.version == "1.0.0" and "observations" in stages
    folder = release_dir(db.state.settings, release)
    assert folder == releases / "1.0.0"
    assert not [p for p in entries(releases) if p.startswith(".tmp")]
    names = files(folder)
    assert names == sorted([
        "CHANGELOG.md", "CITATION.cff", "LICENSE", "README.md", "SHA256SUMS",
        "datapackage.json", "dwca.zip", "retracted.csv", "media.parquet",
        "phenometrics.csv", "phenophases.csv", "taxa.csv",
        "data/observations-2022.parquet", "data/observations-2023.parquet",
        "data/observations-2024.parquet", "data/observations-2025.parquet",
    ])
    assert release.observation_count == 12

    # pyarrow: the pinned schema, zstd, key-value metadata, sorted.
    path = folder / "data" / "observations-2024.parquet"
    file = pq.ParquetFile(path)
    assert file.schema_arrow.equals(schema.OBSERVATIONS, check_metadata=False)
    assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    kv = file.schema_arrow.metadata
    assert kv[b"dataset_version"] == b"1.0.0"
    assert kv[b"schema_version"] == SCHEMA_VERSION.encode()
    assert kv[b"license"] == b"CC-BY-4.0"
    rows = file.read().to_pylist()
    assert [(r["eventDate"], r["scientificName"]) for r in rows[:2]] == [
        ("2024-03-14T10:30:00+01:00", "Corylus avellana"),
        ("2024-03-14T10:30:00+01:00", "Quercus robur"),
    ]
    by_id = {r["occurrenceID"]: r for r in rows}
    assert world.deleted.id not in by_id and world.rejected.id not in by_id
    first = by_id[world.open_obs.id]
    assert first["year"] == 2024 and first["startDayOfYear"] == 74
    assert first["basisOfRecord"] == "HumanObservation" and first["geodeticDatum"] == "EPSG:4326"
    assert first["decimalLatitude"] == 52.0907374 and first["intensity"] == "50-74%"
    assert first["occurrenceRemarks"] is None  # the project does not publish notes
    assert first["recordedBy"].startswith("observer-") and first["recordedBy"] == first[
        "rightsHolder"]
    corrected = by_id[world.corrected.id]
    assert corrected["scientificName"] == "Corylus avellana"
    assert corrected["phenophaseID"] == "open_flowers"
    assert corrected["identificationVerificationStatus"] == "verified"
    assert corrected["qualityFlags"] == ["coarse_location", "out_of_season"]

    # pandas reads every year at once.
    df = pd.read_parquet(folder / "data")
    assert len(df) == 12 and set(df["year"]) == {2022, 2023, 2024, 2025}
    notes = df["occurrenceRemarks"].dropna().tolist()
    assert notes == ["first flowers by the pond"]
    late = pd.read_parquet(folder / "data" / "observations-2025.parquet")
    assert late["eventDate"].tolist() == ["2025-01-01T00:30:00+01:00"]

    # DuckDB reads the files and their key-value metadata.
    con = duckdb.connect()
    glob = str(folder / "data" / "observations-*.parquet")
    assert con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone() == (12,)
    meta = dict(con.execute(
        f"SELECT decode(key), decode(value) FROM parquet_kv_metadata('{path}')"
    ).fetchall())
    assert meta["dataset_version"] == "1.0.0" and meta["license"] == "CC-BY-4.0"

    # Media: ready photos under an open license of published observations only.
    media = pq.read_table(folder / "media.parquet").to_pylist()
    assert len(media) == 2 and release.media_count == 2
    assert {m["occurrenceID"] for m in media} <= set(by_id) | set(df["occurrenceID"])
    assert all(m["identifier"].endswith("/derivatives/1024") for m in media)
    assert media[0]["identifier"].startswith("/api/v1/photos/")

    # Vocabularies.
    phases = pd.read_csv(folder / "phenophases.csv")
    assert set(phases["phenophaseID"]) == {"open_flowers", "breaking_leaf_buds"}
    assert phases["ppoIRI"].notna().sum() == 1

    # Phenometrics: first yes 70, last yes 75, prior no 10 days before, next no 15 after.
    metrics = pd.read_csv(folder / "phenometrics.csv").to_dict("records")
    site = [m for m in metrics if m["year"] == 2022]
    assert site == [{
        "siteID": "52.000,5.000", "decimalLatitude": 52.0, "decimalLongitude": 5.0,
        "scientificName": "Corylus avellana", "phenophaseID": "open_flowers", "year": 2022,
        "firstYesDayOfYear": 70, "lastYesDayOfYear": 75, "numYesRecords": 2,
        "numDaysSincePriorNo": 10, "numDaysUntilNextNo": 15,
    }]

    # frictionless validates the whole package.
    report = Package(str(folder / "datapackage.json")).validate()
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])

    # python-dwca-reader reads the core and the extension.
    with DwCAReader(str(folder / "dwca.zip")) as archive:
        core = list(archive)
        assert len(core) == 12
        assert archive.descriptor.core.type == "http://rs.tdwg.org/dwc/terms/Occurrence"
        row = next(r for r in core if r.id == world.open_obs.id)
        assert row.data["http://rs.tdwg.org/dwc/terms/scientificName"] == "Corylus avellana"
        facts = {e.data["http://rs.tdwg.org/dwc/terms/measurementType"]:
                 e.data["http://rs.tdwg.org/dwc/terms/measurementValue"] for e in row.extensions}
        assert facts == {"phenophase status: Open flowers": "yes",
                         "intensity: Open flowers": "50-74%"}

    # sha256sum -c.
    check = await sha256sum(folder)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAILED" not in check.stdout and check.stdout.count(": OK") == len(names) - 1

    # The citation and README.
    assert 'version: "1.0.0"' in (folder / "CITATION.cff").read_text()
    readme = (folder / "README.md").read_text()
    for column in schema.OBSERVATIONS.names:
        assert f"`{column}`" in readme


def _scan_values(values: list[object], where: str) -> None:
    for value in values:
        if isinstance(value, float):
            for lat, lon in SECRET_POINTS.values():
                assert abs(value - lat) > 1e-4 and abs(value - lon) > 1e-4, where
        elif isinstance(value, str):
            _scan_text(value, where)
        elif isinstance(value, list):
            _scan_values(value, where)


def _scan_text(text: str, where: str) -> None:
    for lat, lon in SECRET_POINTS.values():
        for number in (lat, lon):
            # The digits that make a point precise, in any rendering.
            for needle in (f"{number}", f"{number:.4f}", f"{number:.3f}"):
                assert needle not in text, f"{needle} found in {where}"


def _scan_bytes(data: bytes, where: str) -> None:
    _scan_text(data.decode("utf-8", errors="replace"), where)
    for lat, lon in SECRET_POINTS.values():
        for number in (lat, lon):
            assert pa.array([number]).buffers()[1].to_pybytes() not in data, where


def _scan_parquet(data: bytes, where: str) -> None:
    file = pq.ParquetFile(io.BytesIO(data))
    for key, value in (file.schema_arrow.metadata or {}).items():
        _scan_text(key.decode() + value.decode(errors="replace"), where + " metadata")
    table = file.read()
    for name in table.column_names:
        _scan_values(table[name].to_pylist(), f"{where}:{name}")


async def test_no_precise_coordinate_of_a_protected_record_appears_anywhere(
    releases: Path, db: Starlette
) -> None:
    await make_world()
    release = await publish(db.state.settings, db.state.database)
    folder = release_dir(db.state.settings, release)
    scanned = 0
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        scanned += 1
        if path.suffix == ".parquet":
            _scan_parquet(data, str(path))
            # Encoded pages are compressed: scan the decoded values above, and
            # the raw bytes for anything stored uncompressed (footer, stats).
            _scan_bytes(data, str(path))
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    _scan_bytes(archive.read(member), f"{path}!{member}")
        else:
            _scan_bytes(data, str(path))
    assert scanned == 16
    # And the precise points do exist in the database: the scan is meaningful.
    assert await Observation.exists(latitude=SECRET_POINTS["private"][0])
    df = pd.read_parquet(folder / "data")
    private = df[df["informationWithheld"].notna()]
    assert len(private) == 1 and private["decimalLatitude"].isna().all()
    generalised = df[df["dataGeneralizations"].notna()]
    assert sorted(generalised["decimalLatitude"]) == [52.35, 53.25]
    assert (generalised["coordinateUncertaintyInMeters"] > 7000).all()
    assert "secret garden" not in json.dumps(df.astype(str).to_dict())


async def test_second_release_lists_retracted_ids_and_versions_move_forward(
    releases: Path, db: Starlette
) -> None:
    world = await make_world()
    settings, database = db.state.settings, db.state.database
    first = await publish(settings, database)
    world.open_obs.is_deleted = True
    await world.open_obs.save()
    world.corrected.review_status = "rejected"  # type: ignore[assignment]
    await world.corrected.save()
    with pytest.raises(errors.AlreadyExists):
        await publish(settings, database, version="1.0.0")
    with pytest.raises(errors.ValidationFailed) as bad:
        await publish(settings, database, version="0.9.0")
    assert bad.value.code == "invalid_version"
    second = await publish(settings, database)
    assert (first.version, second.version) == ("1.0.0", "1.1.0")
    folder = release_dir(settings, second)
    retracted = pd.read_csv(folder / "retracted.csv")["occurrenceID"].tolist()
    assert sorted(retracted) == sorted([world.open_obs.id, world.corrected.id])
    assert second.retracted_count == 2 and second.observation_count == 10
    changelog = (folder / "CHANGELOG.md").read_text()
    assert "## 1.1.0" in changelog and "## 1.0.0" in changelog
    # The first release did not change.
    check = await sha256sum(release_dir(settings, first))
    assert check.returncode == 0
    third = await publish(settings, database, version="1.1.1")
    assert third.version == "1.1.1"


async def test_a_removed_column_forces_a_major_version(releases: Path, db: Starlette) -> None:
    await make_world()
    settings, database = db.state.settings, db.state.database
    first = await publish(settings, database)
    package_path = release_dir(settings, first) / "datapackage.json"
    package = json.loads(package_path.read_text())
    # Pretend the previous release had a column this one lacks.
    package["resources"][0]["schema"]["fields"].append({"name": "habitat", "type": "string"})
    package_path.chmod(0o644)
    package_path.write_text(json.dumps(package))
    with pytest.raises(errors.ValidationFailed, match="major"):
        await publish(settings, database, version="1.1.0")
    second = await publish(settings, database)
    assert second.version == "2.0.0"
    assert "removed columns habitat" in (release_dir(settings, second) / "CHANGELOG.md").read_text()


async def test_a_failed_publish_leaves_no_partial_release(
    releases: Path, db: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_world()

    def broken(self: TableWriter) -> None:
        raise OSError("disk full")

    # A third-party failure (the disk), not a mock of our own logic.
    monkeypatch.setattr(TableWriter, "close", broken)
    with pytest.raises(OSError):
        await publish(db.state.settings, db.state.database)
    assert entries(releases) == []


async def test_a_publish_killed_between_rename_and_commit_does_not_block_the_next(
    releases: Path, db: Starlette
) -> None:
    """The folder of a release whose row was never committed (the process died
    between the two) is replaced by the next publish of that version."""
    await make_world()
    settings, database = db.state.settings, db.state.database
    first = await publish(settings, database)
    await Release.filter(id=first.id).delete()  # the commit that never happened
    (releases / ".tmp-1.0.0-deadbeef").mkdir()  # and a killed publish's work folder
    again = await publish(settings, database)
    assert again.version == first.version
    assert (await sha256sum(release_dir(settings, again))).returncode == 0
    assert entries(releases) == [".tmp-1.0.0-deadbeef", "1.0.0"]  # young: may be running


async def test_two_runs_of_one_publish_job_publish_it_once_and_both_succeed(
    releases: Path, db: Starlette
) -> None:
    """A job whose lease ran out while its first run still wrote the release is
    claimed by a second worker: whichever commits second finds the version
    published and succeeds instead of failing the job."""
    await make_world()
    settings, database = db.state.settings, db.state.database
    payload = {"version": "1.0.0", "user_id": None}
    await asyncio.gather(*(publish_job(payload, settings=settings, database=database)
                           for _ in range(2)))
    assert await Release.filter(version="1.0.0").count() == 1
    release = await Release.get(version="1.0.0")
    assert (await sha256sum(release_dir(settings, release))).returncode == 0
