"""Projects: list, read, create (coordinators), join, and assign project roles."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from schemas import errors
from schemas.roles import GlobalRole, ProjectRole, project_role_at_least
from server.endpoint import Access, Call, Endpoint
from server.models import audit
from server.models.accounts import Membership, User
from server.models.reference import Project, ProjectTaxon, Taxon
from server.models.sequence import next_seq


async def project_dict(project: Project, *, with_taxa: bool = False) -> dict[str, Any]:
    bbox = [
        project.min_latitude, project.min_longitude, project.max_latitude, project.max_longitude
    ]
    data: dict[str, Any] = {
        "id": project.id,
        "slug": project.slug,
        "name": project.name,
        "description": project.description,
        "license": project.license,
        "area": (
            {"bbox": bbox, "geojson": project.area_geojson}
            if None not in bbox or project.area_geojson
            else None
        ),
        "review_policy": {
            "agreements_required": project.agreements_required,
            "auto_accept": project.auto_accept,
            "max_uncertainty_m": project.max_uncertainty_m,
        },
        "is_open": project.is_open,
    }
    if with_taxa:
        data["taxa"] = sorted(
            await ProjectTaxon.filter(project_id=project.id).values_list("taxon_id", flat=True)
        )
    return data


async def get_project(slug: str) -> Project:
    project = await Project.get_or_none(slug=slug, is_deleted=False)
    if project is None:
        raise errors.NotFound(f"There is no project {slug!r}.")
    return project


async def require_project_role(user: User, project: Project, needed: ProjectRole) -> None:
    """Admins may do anything; others need at least ``needed`` in the project."""
    if user.role == GlobalRole.ADMIN:
        return
    membership = await Membership.get_or_none(user_id=user.id, project_id=project.id)
    if membership is None or not project_role_at_least(membership.role, needed):
        raise errors.PermissionDenied(
            f"This needs the {needed} role in project {project.slug!r}."
        )


async def touch(project: Project, conn: BaseDBAsyncClient) -> None:
    """Give the project a new sync number, so that a new member's device pulls it
    even when it had pulled past the project's last change."""
    project.updated_seq = await next_seq(conn)
    await project.save(using_db=conn, update_fields=["updated_seq", "updated_at"])


async def list_projects(call: Call) -> Response:
    projects = await Project.filter(is_deleted=False).order_by("name")
    return JSONResponse({"projects": [await project_dict(p) for p in projects]})


async def read_project(call: Call) -> Response:
    project = await get_project(call.request.path_params["slug"])
    return JSONResponse(await project_dict(project, with_taxa=True))


async def create_project(call: Call) -> Response:
    body = call.body
    user = call.require_user()
    names = body.get("taxa", [])
    taxa = await Taxon.filter(scientific_name__in=names, is_deleted=False)
    unknown = sorted(set(names) - {t.scientific_name for t in taxa})
    if unknown:
        raise errors.ValidationFailed(
            f"Unknown taxa: {', '.join(unknown)}.",
            details=[{"path": "/taxa", "message": f"unknown taxon {n!r}"} for n in unknown],
        )
    bbox = body.get("bbox")
    if bbox and (bbox[0] > bbox[2] or bbox[1] > bbox[3]):
        raise errors.ValidationFailed(
            "bbox must be [min_lat, min_lon, max_lat, max_lon] with min <= max.",
            details=[{"path": "/bbox", "message": "min greater than max"}],
        )
    try:
        async with in_transaction() as conn:
            seq = await next_seq(conn)
            project = await Project.create(
                slug=body["slug"],
                name=body["name"],
                description=body.get("description", ""),
                license=body.get("license", "CC-BY-4.0"),
                min_latitude=bbox[0] if bbox else None,
                min_longitude=bbox[1] if bbox else None,
                max_latitude=bbox[2] if bbox else None,
                max_longitude=bbox[3] if bbox else None,
                agreements_required=body.get("agreements_required", 2),
                auto_accept=body.get("auto_accept", True),
                max_uncertainty_m=body.get("max_uncertainty_m", 1000),
                publish_notes=body.get("publish_notes", False),
                is_open=body.get("is_open", True),
                created_seq=seq,
                updated_seq=seq,
                using_db=conn,
            )
            await ProjectTaxon.bulk_create(
                [ProjectTaxon(project=project, taxon=t) for t in taxa], using_db=conn
            )
            await Membership.create(
                user=user, project=project, role=ProjectRole.COORDINATOR, using_db=conn
            )
            await audit.record(
                "project.created", "project", project.id, actor=user, using_db=conn
            )
    except IntegrityError:
        raise errors.AlreadyExists(f"A project with slug {body['slug']!r} exists.") from None
    return JSONResponse(await project_dict(project, with_taxa=True), status_code=201)


async def join_project(call: Call) -> Response:
    user = call.require_user()
    project = await get_project(call.request.path_params["slug"])
    if not project.is_open:
        raise errors.PermissionDenied(
            f"Project {project.slug!r} is invitation-only: ask a coordinator to add you."
        )
    async with in_transaction() as conn:
        membership, created = await Membership.get_or_create(
            user=user, project=project, defaults={"role": ProjectRole.VOLUNTEER}, using_db=conn
        )
        if created:
            await audit.record("project.joined", "project", project.id, actor=user,
                               using_db=conn)
    return JSONResponse(
        {"project": project.slug, "role": str(membership.role)}, status_code=201 if created else 200
    )


async def set_member_role(call: Call) -> Response:
    actor = call.require_user()
    project = await get_project(call.request.path_params["slug"])
    await require_project_role(actor, project, ProjectRole.COORDINATOR)
    member = await User.get_or_none(username=call.request.path_params["username"])
    if member is None:
        raise errors.NotFound(f"There is no user {call.request.path_params['username']!r}.")
    role = ProjectRole(call.body["role"])
    async with in_transaction() as conn:
        membership = await Membership.get_or_none(
            user_id=member.id, project_id=project.id, using_db=conn
        )
        before = str(membership.role) if membership else None
        if membership is None:
            membership = await Membership.create(
                user=member, project=project, role=role, using_db=conn
            )
        else:
            membership.role = role
            await membership.save(using_db=conn, update_fields=["role"])
        if before is None:
            await touch(project, conn)
        await audit.record(
            "membership.role_set", "project", project.id, actor=actor, using_db=conn,
            data={"user": member.username, "from": before, "to": str(role)},
        )
    return JSONResponse({"project": project.slug, "user": member.username, "role": str(role)})


ENDPOINTS = [
    Endpoint("GET", "/api/v1/projects", list_projects, "List projects", Access.PUBLIC,
             tags=("projects",)),
    Endpoint("POST", "/api/v1/projects", create_project, "Create a project (coordinators)",
             Access.COORDINATOR, request_schema="project-create", response_schema="project",
             status=201, tags=("projects",), errors={409: "The slug is taken."}),
    Endpoint("GET", "/api/v1/projects/{slug}", read_project, "A project with its species list",
             Access.PUBLIC, response_schema="project", tags=("projects",)),
    Endpoint("POST", "/api/v1/projects/{slug}/join", join_project,
             "Join an open project as a volunteer", Access.USER, status=201, tags=("projects",)),
    Endpoint("PUT", "/api/v1/projects/{slug}/members/{username}", set_member_role,
             "Give a user a role in the project (project coordinators)", Access.USER,
             request_schema="membership", tags=("projects",)),
]
