from __future__ import annotations

import httpx

from server.models.accounts import Membership
from server.models.audit import AuditEvent
from server.models.reference import Project, ProjectTaxon
from server.vocabulary import load_vocabulary
from tests.factories import auth, make_project, make_user

NEW = {"slug": "hazel-watch", "name": "Hazel watch", "bbox": [50.7, 3.3, 53.6, 7.3],
       "taxa": ["Corylus avellana", "Alnus glutinosa"]}


async def test_coordinator_creates_a_project_with_a_species_list(
    client: httpx.AsyncClient,
) -> None:
    await load_vocabulary()
    user, token = await make_user("coordinator")
    r = await client.post("/api/v1/projects", json=NEW, headers=auth(token))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["area"]["bbox"] == [50.7, 3.3, 53.6, 7.3]
    assert len(body["taxa"]) == 2
    project = await Project.get(slug="hazel-watch")
    assert project.updated_seq > 0
    assert (await Membership.get(user=user, project=project)).role == "coordinator"
    assert await AuditEvent.exists(action="project.created", entity_id=str(project.id))
    listed = await client.get("/api/v1/projects")
    assert [p["slug"] for p in listed.json()["projects"]] == ["hazel-watch"]


async def test_volunteer_cannot_create_a_project(client: httpx.AsyncClient) -> None:
    _, token = await make_user("volunteer")
    r = await client.post("/api/v1/projects", json=NEW, headers=auth(token))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "permission_denied"
    assert not await Project.exists()


async def test_bad_projects_are_rejected_and_nothing_is_written(
    client: httpx.AsyncClient,
) -> None:
    await load_vocabulary()
    _, token = await make_user("admin")
    cases = [
        ({**NEW, "taxa": ["Corylus avellana", "Quercus fantasia"]}, 422),
        ({**NEW, "bbox": [53.6, 3.3, 50.7, 7.3]}, 422),  # min > max
        ({**NEW, "bbox": [95, 3.3, 96, 7.3]}, 422),  # latitude out of range
        ({**NEW, "slug": "Hazel Watch!"}, 422),
        ({**NEW, "agreements_required": "two"}, 422),
    ]
    for body, status in cases:
        r = await client.post("/api/v1/projects", json=body, headers=auth(token))
        assert r.status_code == status, (body, r.text)
    assert not await Project.exists()
    assert not await ProjectTaxon.exists()
    assert (await client.post("/api/v1/projects", json=NEW, headers=auth(token))).status_code == 201
    r = await client.post("/api/v1/projects", json=NEW, headers=auth(token))
    assert r.status_code == 409


async def test_join_open_project_but_not_a_closed_one(client: httpx.AsyncClient) -> None:
    open_project = await make_project()
    closed = await make_project(is_open=False)
    _, token = await make_user()
    r = await client.post(f"/api/v1/projects/{open_project.slug}/join", headers=auth(token))
    assert r.status_code == 201
    again = await client.post(f"/api/v1/projects/{open_project.slug}/join", headers=auth(token))
    assert again.status_code == 200
    r = await client.post(f"/api/v1/projects/{closed.slug}/join", headers=auth(token))
    assert r.status_code == 403
    r = await client.post("/api/v1/projects/nowhere/join", headers=auth(token))
    assert r.status_code == 404


async def test_only_project_coordinators_assign_roles(client: httpx.AsyncClient) -> None:
    project = await make_project()
    other = await make_project()
    _, coordinator = await make_user("coordinator", project=project)
    _, reviewer = await make_user("reviewer", project=project)
    _, foreign = await make_user("coordinator", project=other)
    member, _ = await make_user("volunteer", project=project)
    url = f"/api/v1/projects/{project.slug}/members/{member.username}"
    for token in (reviewer, foreign):
        r = await client.put(url, json={"role": "expert"}, headers=auth(token))
        assert r.status_code == 403
    r = await client.put(url, json={"role": "boss"}, headers=auth(coordinator))
    assert r.status_code == 422
    assert (await Membership.get(user=member, project=project)).role == "volunteer"
    r = await client.put(url, json={"role": "expert"}, headers=auth(coordinator))
    assert r.status_code == 200
    assert (await Membership.get(user=member, project=project)).role == "expert"
    assert await AuditEvent.exists(action="membership.role_set")
