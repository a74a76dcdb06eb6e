"""The phenology vocabulary shipped with Phenosync: taxa and phenophases.

The data live in ``schemas/data/*.json`` so that apps, scripts and other
servers can read them without Python.  Phenophases follow Nature's Notebook
(definitions, intensity classes) and link to the Plant Phenology Ontology
where a term exists.  ``seasons`` gives each taxon's typical onset day of
year in the Netherlands, used for demo data (not for quality checks, which
learn from verified observations).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

TAXON_GROUPS = ("tree", "shrub", "herb", "bird", "insect", "amphibian")


@dataclass(frozen=True)
class IntensityClass:
    code: str
    label: str


@dataclass(frozen=True)
class Intensity:
    kind: str  # "percent" or "count"
    question: str
    classes: tuple[IntensityClass, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "question": self.question,
            "classes": [{"code": c.code, "label": c.label} for c in self.classes],
        }


@dataclass(frozen=True)
class PhenophaseTerm:
    code: str
    name: str
    definition: str
    ppo_iri: str | None
    groups: tuple[str, ...]
    intensity: Intensity | None


@dataclass(frozen=True)
class Season:
    mean_doy: int
    sd_days: int


@dataclass(frozen=True)
class TaxonTerm:
    scientific_name: str
    rank: str
    vernacular_nl: str
    vernacular_en: str
    group: str
    sensitive: bool
    seasons: dict[str, Season] = field(default_factory=dict)


def _read(name: str) -> Any:
    return json.loads(resources.files("schemas").joinpath("data", name).read_text("utf-8"))


@cache
def phenophases() -> tuple[PhenophaseTerm, ...]:
    terms = []
    for raw in _read("phenophases.json"):
        intensity = None
        if raw.get("intensity"):
            i = raw["intensity"]
            intensity = Intensity(
                kind=i["kind"],
                question=i.get("question", ""),
                classes=tuple(IntensityClass(c["code"], c["label"]) for c in i["classes"]),
            )
        terms.append(
            PhenophaseTerm(
                code=raw["code"],
                name=raw["name"],
                definition=raw["definition"],
                ppo_iri=raw.get("ppo_iri"),
                groups=tuple(raw["groups"]),
                intensity=intensity,
            )
        )
    return tuple(terms)


@cache
def taxa() -> tuple[TaxonTerm, ...]:
    return tuple(
        TaxonTerm(
            scientific_name=raw["scientific_name"],
            rank=raw.get("rank", "species"),
            vernacular_nl=raw.get("vernacular_nl", ""),
            vernacular_en=raw.get("vernacular_en", ""),
            group=raw["group"],
            sensitive=bool(raw.get("sensitive", False)),
            seasons={
                code: Season(int(s["mean_doy"]), int(s["sd_days"]))
                for code, s in raw.get("seasons", {}).items()
            },
        )
        for raw in _read("taxa.json")
    )
