"""Who may call what: every route of the app, for every role, in one table.

The resource in each row is the *owner's*: a volunteer of the project whose
obscured record waits for review, with photos and an unfinished upload
(``tests/factories_security.py``).  The roles:

- ``anonymous``: no token, no session;
- ``owner``: the volunteer whose records they are;
- ``volunteer``: another volunteer of the same project;
- ``outsider``: a volunteer of another project;
- ``reviewer``, ``expert``, ``coordinator``: that role in the project (the
  coordinator is a global coordinator too);
- ``admin``: a global admin, member of no project.

Outcomes: ``ok`` (2xx or 3xx), ``401``, ``403``, ``404``, and for the
reviewer pages ``login`` (sent to ``/review/login``: the page's 401).  Page
requests follow redirects, because the pages answer a denied action by
redirecting to a page that says so.  The logins are sent with the role's own
name and password; ``anonymous`` sends a name nobody has.  Logging out of
the pages lands everyone on the login page.

The table's rows are compared with the routes the app serves: a new route
fails ``test_every_route_has_a_row`` until it gets one.
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from server.routes import ENDPOINTS
from tests.factories_security import (
    ROUTE_REQUESTS,
    app_routes,
    make_caller,
    make_secured,
    role_client,
)

ROLES = ("anonymous", "owner", "volunteer", "outsider", "reviewer", "expert", "coordinator",
         "admin")

MATRIX_TEXT = """
route                                             anon  owner volun outsd revwr exprt coord admin
GET /health                                       ok    ok    ok    ok    ok    ok    ok    ok
GET /openapi.json                                 ok    ok    ok    ok    ok    ok    ok    ok
GET /metrics                                      ok    ok    ok    ok    ok    ok    ok    ok
POST /api/v1/auth/register                        ok    ok    ok    ok    ok    ok    ok    ok
POST /api/v1/auth/login                           401   ok    ok    ok    ok    ok    ok    ok
POST /api/v1/auth/logout                          401   ok    ok    ok    ok    ok    ok    ok
GET /api/v1/me                                    401   ok    ok    ok    ok    ok    ok    ok
GET /api/v1/projects                              ok    ok    ok    ok    ok    ok    ok    ok
POST /api/v1/projects                             401   403   403   403   403   403   ok    ok
GET /api/v1/projects/{slug}                       ok    ok    ok    ok    ok    ok    ok    ok
POST /api/v1/projects/{slug}/join                 401   ok    ok    ok    ok    ok    ok    ok
PUT /api/v1/projects/{slug}/members/{username}    401   403   403   403   403   403   ok    ok
GET /api/v1/taxa                                  ok    ok    ok    ok    ok    ok    ok    ok
GET /api/v1/phenophases                           ok    ok    ok    ok    ok    ok    ok    ok
GET /api/v1/sync/pull                             401   ok    ok    ok    ok    ok    ok    ok
POST /api/v1/sync/push                            401   ok    ok    ok    ok    ok    ok    ok
GET /api/v1/photos/{photo_id}                     401   ok    404   404   ok    ok    ok    ok
GET /api/v1/photos/{photo_id}/derivatives/{size}  ok    ok    ok    ok    ok    ok    ok    ok
GET /api/v1/photos/{photo_id}/original            401   ok    403   403   ok    ok    ok    ok
OPTIONS /api/v1/uploads/                          ok    ok    ok    ok    ok    ok    ok    ok
POST /api/v1/uploads/                             401   ok    403   403   403   403   403   403
OPTIONS /api/v1/uploads/{upload_id}               ok    ok    ok    ok    ok    ok    ok    ok
HEAD /api/v1/uploads/{upload_id}                  401   ok    403   403   403   403   403   403
PATCH /api/v1/uploads/{upload_id}                 401   ok    403   403   403   403   403   403
DELETE /api/v1/uploads/{upload_id}                401   ok    403   403   403   403   403   403
GET /api/v1/review/queue                          401   403   403   403   ok    ok    ok    ok
POST /api/v1/review/claims                        401   403   403   403   ok    ok    ok    ok
DELETE /api/v1/review/claims/{observation_id}     401   403   403   403   ok    ok    ok    ok
GET /api/v1/review/observations/{observation_id}  401   403   403   403   ok    ok    ok    ok
POST /api/v1/review/decisions                     401   403   403   403   ok    ok    ok    ok
POST /api/v1/review/decisions/bulk                401   403   403   403   ok    ok    ok    ok
GET /api/v1/review/stats                          401   403   403   403   ok    ok    ok    ok
GET /api/v1/review/flags                          ok    ok    ok    ok    ok    ok    ok    ok
GET /api/v1/datasets                              ok    ok    ok    ok    ok    ok    ok    ok
POST /api/v1/datasets                             401   403   403   403   403   403   ok    ok
GET /api/v1/datasets/jobs/{job_id}                401   403   403   403   403   403   ok    ok
GET /datasets                                     ok    ok    ok    ok    ok    ok    ok    ok
GET /datasets/{version}/{path}                    ok    ok    ok    ok    ok    ok    ok    ok
GET /review/                                      login 403   403   403   ok    ok    ok    ok
GET /review/login                                 ok    ok    ok    ok    ok    ok    ok    ok
POST /review/login                                401   ok    ok    ok    ok    ok    ok    ok
POST /review/logout                               login login login login login login login login
GET /review/next                                  login 403   403   403   ok    ok    ok    ok
GET /review/items/{observation_id}                login 403   403   403   ok    ok    ok    ok
POST /review/items/{observation_id}/decision      login 403   403   403   ok    ok    ok    ok
POST /review/items/{observation_id}/skip          login 403   403   403   ok    ok    ok    ok
POST /review/bulk                                 login 403   403   403   ok    ok    ok    ok
GET /review/static/{path}                         ok    ok    ok    ok    ok    ok    ok    ok
"""


def parse(text: str) -> dict[str, dict[str, str]]:
    rows = [line.split() for line in text.strip().splitlines()[1:]]
    table = {}
    for row in rows:
        assert len(row) == 2 + len(ROLES), row
        key = f"{row[0]} {row[1]}"
        assert key not in table, f"two rows for {key}"
        table[key] = dict(zip(ROLES, row[2:], strict=True))
    return table


MATRIX = parse(MATRIX_TEXT)


def outcome(response: httpx.Response) -> str:
    if any(r.headers.get("location", "").endswith("/review/login") for r in response.history):
        return "login"
    if response.status_code < 400:
        return "ok"
    return str(response.status_code)


def test_every_route_has_a_row(app: Starlette) -> None:
    served = app_routes(app)
    assert set(MATRIX) - served == set(), "rows for routes the app does not serve"
    assert served - set(MATRIX) == set(), "routes without a row in MATRIX_TEXT"
    assert set(ROUTE_REQUESTS) == served, "routes without a request in factories_security"
    declared = {f"{e.method} {e.path}" for e in ENDPOINTS}
    assert declared <= served


async def test_each_role_gets_what_the_matrix_says(db: Starlette) -> None:
    """All roles against one world, each with a client of its own; a request
    that changes something works on a resource of its own (a fresh token, a
    fresh upload, a fresh record to review), so the roles do not interfere."""
    async with role_client(db) as client:
        secured = await make_secured(db, client)
    got: dict[str, dict[str, str]] = {key: {} for key in MATRIX}
    for role in ROLES:
        async with role_client(db) as client:
            caller = await make_caller(client, secured, role)
            for key in MATRIX:
                responses = await ROUTE_REQUESTS[key](caller)
                for r in responses:
                    assert r.status_code < 500, f"{role} {key}: {r.status_code} {r.text[:300]}"
                got[key][role] = "/".join(sorted({outcome(r) for r in responses}))
    wrong = [f"{key} as {role}: expected {row[role]}, got {got[key][role]}"
             for key, row in MATRIX.items() for role in ROLES if got[key][role] != row[role]]
    assert not wrong, "\n".join(wrong)
