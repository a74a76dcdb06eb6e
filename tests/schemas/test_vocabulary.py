from __future__ import annotations

from schemas import vocabulary

FOLLOWED = {
    "Corylus avellana", "Quercus robur", "Betula pendula", "Sambucus nigra",
    "Hirundo rustica", "Anthocharis cardamines",
}


def test_starter_set_is_about_thirty_common_species() -> None:
    names = [t.scientific_name for t in vocabulary.taxa()]
    assert 28 <= len(names) <= 40
    assert len(set(names)) == len(names)
    assert FOLLOWED <= set(names)
    assert all(t.vernacular_nl and t.vernacular_en for t in vocabulary.taxa())
    assert {t.group for t in vocabulary.taxa()} <= set(vocabulary.TAXON_GROUPS)


def test_phenophases_are_well_formed() -> None:
    phases = {p.code: p for p in vocabulary.phenophases()}
    assert len(phases) == len(vocabulary.phenophases())
    for p in phases.values():
        assert p.definition and p.groups
        assert set(p.groups) <= set(vocabulary.TAXON_GROUPS)
        if p.ppo_iri is not None:
            assert p.ppo_iri.startswith("http://purl.obolibrary.org/obo/PPO_")
        if p.intensity is not None:
            assert p.intensity.kind in ("percent", "count")
            codes = [c.code for c in p.intensity.classes]
            assert len(codes) == len(set(codes)) >= 3


def test_each_taxon_season_names_a_phenophase_of_its_group() -> None:
    phases = {p.code: p for p in vocabulary.phenophases()}
    for taxon in vocabulary.taxa():
        assert taxon.seasons, taxon.scientific_name
        for code, season in taxon.seasons.items():
            assert taxon.group in phases[code].groups, (taxon.scientific_name, code)
            assert 1 <= season.mean_doy <= 366 and season.sd_days > 0
