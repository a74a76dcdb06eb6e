"""``phenophase_not_valid_for_taxon``: e.g. "singing" for an oak.

A push with such a pair is refused, so this flag appears when the vocabulary
changes under stored records (a phenophase's taxon groups are edited).
"""

from __future__ import annotations

from server.quality.check import Check, CheckContext, Finding, Subject


def run(obs: Subject, ctx: CheckContext) -> Finding | None:
    if obs.phenophase.applies_to(obs.taxon):
        return None
    return Finding(
        CHECK.code,
        f"Phenophase {obs.phenophase.name!r} does not apply to {obs.taxon.scientific_name} "
        f"(a {obs.taxon.group}); it applies to: {', '.join(obs.phenophase.groups or [])}.",
        {"taxon_group": obs.taxon.group, "phenophase_groups": list(obs.phenophase.groups or [])},
    )


CHECK = Check(
    "phenophase_not_valid_for_taxon",
    "Phenophase not valid for the taxon",
    "The phenophase belongs to another kind of organism than the taxon (a bird phenophase "
    "for a tree, say). Correct the taxon or the phenophase, or reject.",
    run,
)
