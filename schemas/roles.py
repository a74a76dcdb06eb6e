"""Who may do what.

A user has one *global* role (``volunteer``, ``coordinator`` or ``admin``) and,
per project, a *membership* role (``volunteer``, ``reviewer``, ``expert`` or
``coordinator``).  Reviewer and expert only exist per project: reviewing a
record needs the role in that record's project.
"""

from __future__ import annotations

from enum import StrEnum


class GlobalRole(StrEnum):
    VOLUNTEER = "volunteer"
    COORDINATOR = "coordinator"
    ADMIN = "admin"


class ProjectRole(StrEnum):
    VOLUNTEER = "volunteer"
    REVIEWER = "reviewer"
    EXPERT = "expert"
    COORDINATOR = "coordinator"


#: Every role name the CLI and the API accept, lowest first.
ROLE_NAMES = ("volunteer", "reviewer", "expert", "coordinator", "admin")

#: Project roles ranked: a higher role may do what a lower one may.
PROJECT_RANK = {
    ProjectRole.VOLUNTEER: 0,
    ProjectRole.REVIEWER: 1,
    ProjectRole.EXPERT: 2,
    ProjectRole.COORDINATOR: 3,
}


def project_role_at_least(role: ProjectRole | str, needed: ProjectRole) -> bool:
    return PROJECT_RANK[ProjectRole(role)] >= PROJECT_RANK[needed]
