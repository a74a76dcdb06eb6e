"""The pinned Arrow schema: a change here is a change of the published contract."""

from __future__ import annotations

import pyarrow as pa

from exports import schema
from schemas.dataset import SCHEMA_VERSION, column_names

PINNED_OBSERVATIONS = pa.schema([
    ("occurrenceID", pa.string(), False), ("basisOfRecord", pa.string(), False),
    ("eventDate", pa.string(), False), ("year", pa.int16(), False),
    ("startDayOfYear", pa.int16(), False), ("decimalLatitude", pa.float64()),
    ("decimalLongitude", pa.float64()), ("coordinateUncertaintyInMeters", pa.float64()),
    ("geodeticDatum", pa.string(), False), ("scientificName", pa.string(), False),
    ("taxonRank", pa.string(), False), ("recordedBy", pa.string(), False),
    ("identificationVerificationStatus", pa.string(), False),
    ("qualityFlags", pa.list_(pa.string()), False), ("license", pa.string(), False),
    ("rightsHolder", pa.string(), False), ("informationWithheld", pa.string()),
    ("dataGeneralizations", pa.string()), ("modified", pa.string(), False),
    ("phenophase", pa.string(), False), ("phenophaseID", pa.string(), False),
    ("phenophaseStatus", pa.string(), False), ("intensity", pa.string()),
    ("occurrenceRemarks", pa.string()),
])


def test_observation_schema_is_pinned() -> None:
    assert SCHEMA_VERSION == "1.0.0"
    assert schema.OBSERVATIONS.equals(PINNED_OBSERVATIONS, check_metadata=False)
    assert column_names("observations") == PINNED_OBSERVATIONS.names


def test_every_column_is_described() -> None:
    for table in (schema.OBSERVATIONS, schema.MEDIA, schema.PHENOMETRICS):
        for f in table:
            assert f.metadata and f.metadata[b"description"], f.name
