"""Push: apply one batch of a device's changes, with a result per record.

The rules (DESIGN.md, "Sync protocol"):
- a create for a known id is an update, an update for an unknown id a create;
- a replay (same content) changes nothing and takes no sequence number;
- server-owned columns in a push are ignored;
- a conflict is a change of client-owned values by *another* device after the
  pushing client's last pull: rejected with the server's version;
- a late copy of an older push of the *same* device is superseded: each record
  keeps the stamp ``(last_pulled_at, push_count)`` of the push that wrote its
  client-owned values, and a push of that device with a lower stamp does not
  overwrite it (a delayed original arriving after its retry and a newer edit);
- one bad record is rejected alone, with a code and a message; the rest of the
  batch applies.  The caller runs this inside one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.sync import CLIENT_ID, PUSHABLE_TABLES, TABLES, Rejection
from sync.records import (
    RecordRejected,
    canonical_observation,
    canonical_photo,
    check_schema,
    same_content,
)
from sync.store import PushStore, ReferenceData, StoredRecord, Wanted, Write

APPLIED = "applied"
UNCHANGED = "unchanged"
REJECTED = "rejected"

# Observations first: a photo in the same batch may point at a new observation.
ORDER = ("observations", "photos")


@dataclass
class RecordResult:
    id: str
    status: str
    code: str | None = None
    message: str | None = None
    details: Any = None
    server_record: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.status == REJECTED:
            out.update(code=self.code, message=self.message)
            if self.details is not None:
                out["details"] = self.details
            if self.server_record is not None:
                out["server_record"] = self.server_record
        return out


@dataclass
class PushResult:
    results: dict[str, list[RecordResult]] = field(default_factory=dict)

    def add(self, table: str, result: RecordResult) -> None:
        self.results.setdefault(table, []).append(result)

    def rejected_ids(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for table, results in self.results.items():
            ids = [r.id for r in results if r.status == REJECTED]
            if ids:
                out[table] = ids
        return out

    def counts(self) -> dict[str, int]:
        counts = {APPLIED: 0, UNCHANGED: 0, REJECTED: 0}
        for results in self.results.values():
            for r in results:
                counts[r.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "results": {t: [r.to_dict() for r in rs] for t, rs in self.results.items()},
            "counts": self.counts(),
            "experimentalRejectedIds": self.rejected_ids(),
        }


async def push(
    store: PushStore,
    *,
    user_id: int,
    device: str | None,
    last_pulled_at: int | None,
    changes: dict[str, dict[str, list[Any]]],
    now: datetime,
    push_count: int | None = None,
    nul_free: bool = False,
) -> PushResult:
    """``push_count``: the device's optional counter of pushes (the same on every
    retry of one push, higher for each new one).  ``nul_free``: the caller knows
    that no text in ``changes`` holds a NUL character (e.g. the JSON body has no
    ``\\u0000`` escape), so records are not searched for one."""
    result = PushResult()
    for table in changes:
        if table not in TABLES:
            for rid in _ids(changes[table]):
                result.add(table, _reject(rid, Rejection.UNKNOWN_TABLE,
                                          f"There is no table {table!r}."))
        elif table not in PUSHABLE_TABLES:
            for rid in _ids(changes[table]):
                result.add(table, _reject(rid, Rejection.READ_ONLY_TABLE,
                                          f"{table} is reference data: devices cannot change it."))
    reference = await store.reference(user_id, _wanted(changes.get("observations", {})))
    for table in ORDER:
        if table in changes:
            await _push_table(
                store, result, reference, table, changes[table], user_id=user_id,
                device=device, stamp=(last_pulled_at or 0, push_count or 0), now=now,
                nul_free=nul_free,
            )
    return result


def _wanted(section: dict[str, list[Any]]) -> Wanted:
    """The reference ids the observations name, as ``canonical_observation``
    reads them (records that fail their checks may add ids that are never used)."""
    found: dict[str, set[int]] = {"project_id": set(), "taxon_id": set(), "phenophase_id": set()}
    for raw in (*section.get("created", []), *section.get("updated", [])):
        if not isinstance(raw, dict):
            continue
        for key, ids in found.items():
            value: Any = raw.get(key)
            if type(value) in (str, int, float):  # "7", 7 and 7.0 are valid ids
                try:
                    ids.add(int(value))
                except (ValueError, OverflowError):
                    pass
    return Wanted(frozenset(found["project_id"]), frozenset(found["taxon_id"]),
                  frozenset(found["phenophase_id"]))


def _ids(section: dict[str, list[Any]]) -> list[str]:
    ids = [r.get("id") if isinstance(r, dict) else None for k in ("created", "updated")
           for r in section.get(k, [])]
    ids += list(section.get("deleted", []))
    return [str(i) for i in ids]


def _reject(rid: Any, code: Rejection, message: str, details: Any = None,
            server_record: dict[str, Any] | None = None) -> RecordResult:
    return RecordResult(str(rid), REJECTED, str(code), message, details, server_record)


async def _push_table(
    store: PushStore, result: PushResult, reference: ReferenceData, table: str,
    section: dict[str, list[Any]], *, user_id: int, device: str | None,
    stamp: tuple[int, int], now: datetime, nul_free: bool,
) -> None:
    writes: list[tuple[str, dict[str, Any]]] = []
    deletes: list[str] = []
    seen: set[str] = set()
    raws = [*section.get("created", []), *section.get("updated", [])]
    ids = [r["id"] for r in raws if isinstance(r.get("id"), str) and CLIENT_ID.match(r["id"])]
    ids += [i for i in section.get("deleted", []) if CLIENT_ID.match(i)]
    stored = await store.load(table, sorted(set(ids)))
    # A photo may point at an observation created earlier in this push
    # (observations are written first): their owners, in one query.
    owners: dict[str, StoredRecord] = {}
    if table == "photos":
        owners = await store.load("observations", sorted({
            r["observation_id"] for r in raws
            if isinstance(r, dict) and isinstance(r.get("observation_id"), str)
            and CLIENT_ID.match(r["observation_id"])
        }))
    for raw in raws:
        rid = raw.get("id")
        try:
            check_schema(table, raw, nul_free=nul_free)
            if rid in seen:
                raise RecordRejected(Rejection.INVALID_RECORD,
                                     f"The id {rid} appears twice in this push.")
            seen.add(rid)
            values = _canonical(owners, reference, table, raw, user_id, now)
        except RecordRejected as rejected:
            result.add(table, _reject(rid, rejected.code, rejected.message, rejected.details))
            continue
        outcome = _decide(stored.get(rid), values, user_id=user_id, device=device, stamp=stamp)
        if outcome is None:
            writes.append((rid, values))
        else:
            result.add(table, outcome)
    for rid in section.get("deleted", []):
        if not CLIENT_ID.match(rid):
            result.add(table, _reject(rid, Rejection.INVALID_ID, f"{rid!r} is not a valid id."))
            continue
        current = stored.get(rid)
        if current is None or current.is_deleted:
            result.add(table, RecordResult(rid, UNCHANGED))
        elif current.user_id != user_id:
            result.add(table, _reject(rid, Rejection.ID_TAKEN, "This id belongs to another user."))
        else:
            deletes.append(rid)
    count = len(writes) + len(deletes)
    if not count:
        return
    seq = await store.reserve_seqs(count)
    batch = [Write(rid, values, seq + i, rid not in stored)
             for i, (rid, values) in enumerate(writes)]
    await store.save_many(table, user_id, device, batch, stamp=stamp)
    for write in batch:
        result.add(table, RecordResult(write.id, APPLIED))
    seq += len(batch)
    await store.delete_many(table, deletes, first_seq=seq)
    for rid in deletes:
        result.add(table, RecordResult(rid, APPLIED))


def _decide(current: StoredRecord | None, values: dict[str, Any], *, user_id: int,
            device: str | None, stamp: tuple[int, int]) -> RecordResult | None:
    """None means "write it"; otherwise the record's result.  ``stamp`` is the
    push's ``(last_pulled_at, push_count)``."""
    if current is None:
        return None
    rid = current.id
    if current.user_id != user_id:
        # Never reveal anything of another user's record.
        return _reject(rid, Rejection.ID_TAKEN,
                       "This id belongs to another user: generate a new one.")
    if current.is_deleted:
        return _reject(rid, Rejection.DELETED,
                       "This record was deleted on another device: discard it or create a copy.")
    if same_content(current.values, values):
        return RecordResult(rid, UNCHANGED)
    own = device is not None and current.client_changed_device == device
    if own and stamp < current.client_changed_stamp:
        # This device wrote the record from a later push (a later pull, or the
        # same pull and a higher push_count): this is an older push delivered
        # late, and its values are older than the device's own newer ones.
        return _reject(
            rid, Rejection.SUPERSEDED,
            "This device changed this record in a later push already: this push is "
            "older (a late delivery), so it changes nothing.",
            server_record=current.wire,
        )
    if current.client_changed_seq > stamp[0] and not own:  # changed elsewhere
        return _reject(
            rid, Rejection.CONFLICT,
            "Another device changed this record after your last pull: merge the server's "
            "version and push again.",
            server_record=current.wire,
        )
    return None


def _canonical(owners: dict[str, StoredRecord], ref: ReferenceData, table: str,
               raw: dict[str, Any], user_id: int, now: datetime) -> dict[str, Any]:
    if table == "photos":
        values = canonical_photo(raw)
        obs = owners.get(values["observation_id"])
        if obs is None or obs.user_id != user_id or obs.is_deleted:
            raise RecordRejected(Rejection.UNKNOWN_OBSERVATION,
                                 "Push the photo's observation first (or in the same batch).")
        return values
    values = canonical_observation(raw, now)
    project = ref.projects.get(values["project_id"])
    if project is None:
        raise RecordRejected(Rejection.UNKNOWN_PROJECT,
                             f"There is no project {values['project_id']}.")
    if project.id not in ref.memberships and not project.is_open:
        raise RecordRejected(Rejection.NOT_A_MEMBER, "You are not a member of this project.")
    group = ref.taxa.get(values["taxon_id"])
    if group is None:
        raise RecordRejected(Rejection.UNKNOWN_TAXON, f"There is no taxon {values['taxon_id']}.")
    if project.taxa and values["taxon_id"] not in project.taxa:
        raise RecordRejected(Rejection.TAXON_NOT_IN_PROJECT,
                             "This taxon is not on the project's species list.")
    phase = ref.phenophases.get(values["phenophase_id"])
    if phase is None:
        raise RecordRejected(Rejection.UNKNOWN_PHENOPHASE,
                             f"There is no phenophase {values['phenophase_id']}.")
    if group not in phase.groups:
        raise RecordRejected(Rejection.PHENOPHASE_NOT_FOR_TAXON,
                             "This phenophase does not apply to this taxon.")
    intensity = values["intensity"]
    allowed = values["status"] == "yes" and intensity in phase.intensity_codes
    if intensity is not None and not allowed:
        raise RecordRejected(
            Rejection.INVALID_INTENSITY,
            f"Intensity {intensity!r} is not a class of this phenophase "
            "(and only a 'yes' has an intensity).",
            sorted(phase.intensity_codes),
        )
    return values
