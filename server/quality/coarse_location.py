"""``coarse_location``: coordinate uncertainty above the project's limit."""

from __future__ import annotations

from server.quality.check import Check, CheckContext, Finding, Subject


def run(obs: Subject, ctx: CheckContext) -> Finding | None:
    limit = obs.project.max_uncertainty_m
    uncertainty = obs.coordinate_uncertainty_m
    if uncertainty is None or limit is None or uncertainty <= limit:
        return None
    return Finding(
        CHECK.code,
        f"The location is known to {uncertainty:,.0f} m only; the project asks for "
        f"{limit:,} m or better.",
        {"coordinate_uncertainty_m": uncertainty, "max_uncertainty_m": limit},
    )


CHECK = Check(
    "coarse_location",
    "Coarse location",
    "The coordinate uncertainty is larger than the project allows, so the record cannot "
    "be tied to one plant or site. It may still be verified if the place is clear from "
    "the notes or photos.",
    run,
)
