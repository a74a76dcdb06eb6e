"""Pushed records: from wire values to canonical values, and back.

Canonical values are what the server stores and compares: a replayed push
compares equal and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from schemas import messages
from schemas.sync import Rejection

RECORD_SCHEMAS = {"observations": "observation-record", "photos": "photo-record"}

# Device clocks are kept but do not make a record "changed".
DEVICE_CLOCK_FIELDS = ("client_created_at", "client_updated_at")

EARLIEST_OBSERVATION = datetime(1900, 1, 1, tzinfo=UTC)
# Clock skew and time zones: a record may be up to a day "in the future".
FUTURE_TOLERANCE = timedelta(days=1)


class RecordRejected(Exception):
    def __init__(self, code: Rejection, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def parse_observed_at(value: str) -> tuple[datetime, int]:
    """ISO 8601 with a UTC offset -> (UTC datetime, offset in minutes)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordRejected(
            Rejection.INVALID_RECORD,
            f"observed_at {value!r} is not an ISO 8601 date-time.",
            [{"path": "/observed_at", "message": "not ISO 8601"}],
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise RecordRejected(
            Rejection.INVALID_RECORD,
            "observed_at must carry its UTC offset, e.g. 2026-03-01T09:30:00+01:00.",
            [{"path": "/observed_at", "message": "no UTC offset"}],
        )
    offset = parsed.utcoffset()
    assert offset is not None
    return parsed.astimezone(UTC), int(offset.total_seconds() // 60)


def format_observed_at(utc: datetime, offset_min: int) -> str:
    return utc.astimezone(timezone(timedelta(minutes=offset_min))).isoformat()


def _ms(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def check_schema(table: str, raw: Any, *, nul_free: bool = False) -> None:
    """Reject a record that breaks its JSON Schema or holds a NUL character;
    ``nul_free``: the caller knows no text of the batch holds one."""
    found = messages.problems(RECORD_SCHEMAS[table], raw)
    if found:
        code = Rejection.INVALID_ID if found[0]["path"] == "/id" else Rejection.INVALID_RECORD
        raise RecordRejected(code, f"{found[0]['path']}: {found[0]['message']}", found)
    if not nul_free and messages.holds_nul(raw):
        raise RecordRejected(Rejection.INVALID_RECORD,
                             "A text of this record holds a NUL character (\\u0000).")


def canonical_observation(raw: dict[str, Any], now: datetime) -> dict[str, Any]:
    observed_at, offset = parse_observed_at(raw["observed_at"])
    if observed_at > now + FUTURE_TOLERANCE:
        raise RecordRejected(
            Rejection.FUTURE_DATE,
            f"observed_at {raw['observed_at']} is in the future: check the phone's date.",
        )
    if observed_at < EARLIEST_OBSERVATION:
        raise RecordRejected(
            Rejection.IMPLAUSIBLE_DATE, f"observed_at {raw['observed_at']} is before 1900."
        )
    return {
        "project_id": int(raw["project_id"]),
        "taxon_id": int(raw["taxon_id"]),
        "phenophase_id": int(raw["phenophase_id"]),
        "status": raw["status"],
        "intensity": raw.get("intensity") or None,
        "observed_at": observed_at,
        "observed_utc_offset_min": offset,
        "latitude": float(raw["latitude"]),
        "longitude": float(raw["longitude"]),
        "coordinate_uncertainty_m": (
            float(raw["coordinate_uncertainty_m"])
            if raw.get("coordinate_uncertainty_m") is not None else None
        ),
        "geoprivacy": raw.get("geoprivacy") or "open",
        "notes": raw.get("notes") or "",
        "license": raw.get("license") or "CC-BY-4.0",
        "client_created_at": _ms(raw.get("created_at")),
        "client_updated_at": _ms(raw.get("updated_at")),
    }


def canonical_photo(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "observation_id": raw["observation_id"],
        "declared_sha256": raw.get("sha256") or None,
        "license": raw.get("license") or "CC-BY-4.0",
        "client_created_at": _ms(raw.get("created_at")),
        "client_updated_at": _ms(raw.get("updated_at")),
    }


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal in every client-owned value that matters (device clocks aside)."""
    keys = (set(a) | set(b)) - set(DEVICE_CLOCK_FIELDS)
    return all(_norm(a.get(k)) == _norm(b.get(k)) for k in keys)


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value
