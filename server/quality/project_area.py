"""``outside_project_area``: the location lies outside the project's area."""

from __future__ import annotations

from server.quality.check import Check, CheckContext, Finding, Subject


def run(obs: Subject, ctx: CheckContext) -> Finding | None:
    project = obs.project
    if project.contains(obs.latitude, obs.longitude):
        return None
    return Finding(
        CHECK.code,
        f"The location ({obs.latitude:.4f}, {obs.longitude:.4f}) is outside the area of "
        f"project {project.name!r}: check for swapped or mistyped coordinates.",
        {
            "latitude": obs.latitude,
            "longitude": obs.longitude,
            "bbox": [project.min_latitude, project.min_longitude, project.max_latitude,
                     project.max_longitude],
        },
    )


CHECK = Check(
    "outside_project_area",
    "Outside the project area",
    "The coordinates fall outside the project's area. Often latitude and longitude are "
    "swapped, a sign is missing, or the phone had no GPS fix yet.",
    run,
)
