"""Who may review what: reviewers and experts per project, admins everywhere."""

from __future__ import annotations

from schemas import errors
from schemas.roles import GlobalRole, ProjectRole, project_role_at_least
from server.models.accounts import Membership, User
from server.models.reference import Project
from server.review.queue import Scope


async def project_role(user: User, project_id: int) -> ProjectRole | None:
    """The user's effective role in a project (admins count as coordinators)."""
    if user.role == GlobalRole.ADMIN:
        return ProjectRole.COORDINATOR
    membership = await Membership.get_or_none(user_id=user.id, project_id=project_id)
    return ProjectRole(membership.role) if membership else None


def may_review(role: ProjectRole | None) -> bool:
    return role is not None and project_role_at_least(role, ProjectRole.REVIEWER)


def is_expert(role: ProjectRole | None) -> bool:
    return role is not None and project_role_at_least(role, ProjectRole.EXPERT)


async def reviewer_scope(user: User, project: Project | None = None) -> Scope:
    """The projects the user reviews (only ``project`` when given); 403 when none."""
    if user.role == GlobalRole.ADMIN:
        ids = [project.id] if project else [
            p.id for p in await Project.filter(is_deleted=False).order_by("id").only("id")
        ]
        return Scope(user.id, tuple(ids), frozenset(ids))
    roles: dict[int, ProjectRole] = {
        int(pid): ProjectRole(role)
        for pid, role in await Membership.filter(user_id=user.id).values_list(
            "project_id", "role"
        )
    }
    if project is not None:
        if not may_review(roles.get(project.id)):
            raise errors.PermissionDenied(
                f"You are not a reviewer in project {project.slug!r}: ask its coordinator."
            )
        roles = {project.id: roles[project.id]}
    ids = sorted(pid for pid, role in roles.items() if may_review(role))
    if not ids:
        raise errors.PermissionDenied(
            "You are not a reviewer in any project: ask a project coordinator for the "
            "reviewer role."
        )
    return Scope(user.id, tuple(ids), frozenset(p for p in ids if is_expert(roles[p])))
