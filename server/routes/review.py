"""The review queue API: next items, claims with a lease, decisions, statistics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response
from tortoise.transactions import in_transaction

from schemas import errors
from server.endpoint import INT64, Access, Call, Endpoint, Query
from server.models.reference import Project
from server.quality import explanations
from server.review import access, queue
from server.review.decisions import DecisionRequest, decide, decide_many
from server.review.detail import observation_detail, summaries
from server.review.stats import reviewer_stats

MAX_PEEK = 100


def lease_ms(call: Call) -> int:
    return int(call.settings.review_lease_minutes) * 60_000


def _int(raw: object, name: str) -> int | None:
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise errors.InvalidParameter(f"{name} must be a whole number, not {raw!r}.") from None
    if value not in INT64:
        raise errors.InvalidParameter(f"{name} is out of range.")
    return value


async def _project(slug: str | None) -> Project | None:
    if not slug:
        return None
    project = await Project.get_or_none(slug=slug, is_deleted=False)
    if project is None:
        raise errors.NotFound(f"There is no project {slug!r}.")
    return project


def _filter(params: Mapping[str, Any]) -> queue.QueueFilter:
    flag = params.get("flag")
    return queue.QueueFilter(
        taxon_id=_int(params.get("taxon_id"), "taxon_id"),
        phenophase_id=_int(params.get("phenophase_id"), "phenophase_id"),
        flag=str(flag) if flag else None,
    )


async def list_queue(call: Call) -> Response:
    user = call.require_user()
    params = dict(call.request.query_params)
    scope = await access.reviewer_scope(user, await _project(params.get("project")))
    limit = _int(params.get("limit"), "limit") or 20
    if not 1 <= limit <= MAX_PEEK:
        raise errors.InvalidParameter(f"limit must be between 1 and {MAX_PEEK}.")
    conn = call.request.app.state.database.connection()
    ids = await queue.peek(conn, scope, _filter(params), limit)
    return JSONResponse({"items": await summaries(ids)})


async def claim_items(call: Call) -> Response:
    user = call.require_user()
    body = call.body
    scope = await access.reviewer_scope(user, await _project(body.get("project")))
    database = call.request.app.state.database
    # JSON Schema's "integer" admits 22.0; SQL's LIMIT does not.
    limit = int(body.get("limit", 1))
    if database.dialect == "postgres":
        async with in_transaction() as conn:
            ids, until = await queue.claim(conn, scope, _filter(body), limit, lease_ms(call))
    else:
        ids, until = await queue.claim(database.connection(), scope, _filter(body), limit,
                                       lease_ms(call))
    return JSONResponse({"items": await summaries(ids), "lease_expires_ms": until})


async def release_claim(call: Call) -> Response:
    user = call.require_user()
    await access.reviewer_scope(user)  # 403 for those who review nothing, as elsewhere
    conn = call.request.app.state.database.connection()
    if not await queue.release(conn, user.id, call.request.path_params["observation_id"]):
        raise errors.NotClaimed("You hold no claim on this record.")
    return Response(status_code=204)


async def read_observation(call: Call) -> Response:
    detail = await observation_detail(call.require_user(),
                                      call.request.path_params["observation_id"])
    return JSONResponse(detail)


async def post_decision(call: Call) -> Response:
    result = await decide(call.require_user(), DecisionRequest.from_body(call.body),
                          lease_ms=lease_ms(call))
    return JSONResponse(result, status_code=201)


async def post_bulk(call: Call) -> Response:
    # Per record a refusal is a result; one who reviews nothing gets 403 at once.
    await access.reviewer_scope(call.require_user())
    requests = [DecisionRequest.from_body(d) for d in call.body["decisions"]]
    results = await decide_many(call.require_user(), requests, lease_ms=lease_ms(call))
    counts = {"applied": sum(r["status"] == "applied" for r in results)}
    counts["rejected"] = len(results) - counts["applied"]
    return JSONResponse({"results": results, "counts": counts})


async def stats(call: Call) -> Response:
    user = call.require_user()
    scope = await access.reviewer_scope(user)
    return JSONResponse(await reviewer_stats(user, scope))


async def flag_codes(call: Call) -> Response:
    return JSONResponse({"flags": explanations()})


TAGS = ("review",)
ENDPOINTS = [
    Endpoint("GET", "/api/v1/review/queue", list_queue,
             "The next items waiting for you (without claiming them)", Access.USER, tags=TAGS,
             description="Query: project (slug), taxon_id, phenophase_id, flag, limit (1-100). "
             "Most flags first, then oldest; escalated items first for experts.",
             query=(Query("project", {"type": "string"}, "A project's slug."),
                    Query("taxon_id", {"type": "integer"}),
                    Query("phenophase_id", {"type": "integer"}),
                    Query("flag", {"type": "string"}, "A quality flag code."),
                    Query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PEEK}))),
    Endpoint("POST", "/api/v1/review/claims", claim_items,
             "Claim the next items with a lease", Access.USER, request_schema="review-claim",
             tags=TAGS, description="Nobody else gets a claimed item until its lease "
             "(PHENOSYNC_REVIEW_LEASE_MINUTES) expires."),
    Endpoint("DELETE", "/api/v1/review/claims/{observation_id}", release_claim,
             "Give a claimed item back (skip)", Access.USER, status=204, tags=TAGS,
             errors={409: "You hold no claim on this record."}),
    Endpoint("GET", "/api/v1/review/observations/{observation_id}", read_observation,
             "A record as a reviewer sees it: photos, flags explained, decisions, the "
             "observer's recent records of the taxon", Access.USER, tags=TAGS),
    Endpoint("POST", "/api/v1/review/decisions", post_decision,
             "Decide a claimed record (verify, reject, needs_info)", Access.USER,
             request_schema="review-decision", status=201, tags=TAGS,
             errors={409: "Not in the queue, not claimed by you, claimed by another "
                     "reviewer, lease expired, or already decided by you."}),
    Endpoint("POST", "/api/v1/review/decisions/bulk", post_bulk,
             "Decide several records, each claimed and decided on its own", Access.USER,
             request_schema="review-decisions-bulk", tags=TAGS),
    Endpoint("GET", "/api/v1/review/stats", stats, "Your review statistics and queue sizes",
             Access.USER, tags=TAGS),
    Endpoint("GET", "/api/v1/review/flags", flag_codes,
             "Every quality flag code with its explanation", Access.PUBLIC, tags=TAGS),
]
