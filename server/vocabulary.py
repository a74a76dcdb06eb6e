"""Load the vocabulary shipped in ``schemas/data`` into the database.

Idempotent: a term already present is updated in place (and takes a new
sequence number only when it changed, so devices re-download only changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from schemas import vocabulary
from server.models.reference import Phenophase, Taxon
from server.models.sequence import next_seq


@dataclass
class LoadReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


async def load_vocabulary() -> LoadReport:
    report = LoadReport()
    async with in_transaction() as conn:
        existing_p = {p.code: p for p in await Phenophase.all().using_db(conn)}
        for term in vocabulary.phenophases():
            values: dict[str, Any] = {
                "name": term.name,
                "definition": term.definition,
                "ppo_iri": term.ppo_iri,
                "groups": list(term.groups),
                "intensity": term.intensity.to_dict() if term.intensity else None,
            }
            await _upsert(conn, Phenophase, existing_p.get(term.code), {"code": term.code}, values,
                          report)
        existing_t = {t.scientific_name: t for t in await Taxon.all().using_db(conn)}
        for taxon in vocabulary.taxa():
            values = {
                "rank": taxon.rank,
                "vernacular_nl": taxon.vernacular_nl,
                "vernacular_en": taxon.vernacular_en,
                "group": taxon.group,
                "sensitive": taxon.sensitive,
            }
            await _upsert(conn, Taxon, existing_t.get(taxon.scientific_name),
                          {"scientific_name": taxon.scientific_name}, values, report)
    return report


async def _upsert(conn, model, row, key, values, report: LoadReport) -> None:  # type: ignore[no-untyped-def]
    if row is None:
        seq = await next_seq(conn)
        await model.create(**key, **values, created_seq=seq, updated_seq=seq, using_db=conn)
        report.created += 1
    elif any(getattr(row, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(row, k, v)
        row.updated_seq = await next_seq(conn)
        await row.save(using_db=conn)
        report.updated += 1
    else:
        report.unchanged += 1
