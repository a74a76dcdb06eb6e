from __future__ import annotations

from starlette.applications import Starlette

from server.models.reference import Phenophase, Taxon
from server.vocabulary import load_vocabulary


async def test_loading_twice_changes_nothing_and_updates_take_new_numbers(
    db: Starlette,
) -> None:
    first = await load_vocabulary()
    assert first.created >= 45 and first.updated == 0
    seqs = {t.id: t.updated_seq for t in await Taxon.all()}
    second = await load_vocabulary()
    assert second.created == 0 and second.updated == 0
    assert {t.id: t.updated_seq for t in await Taxon.all()} == seqs
    await Phenophase.filter(code="open_flowers").update(name="Changed")
    third = await load_vocabulary()
    assert third.updated == 1
    fixed = await Phenophase.get(code="open_flowers")
    assert fixed.name == "Open flowers" and fixed.updated_seq > max(seqs.values())
