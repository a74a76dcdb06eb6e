"""The photo record (upload state, derivative URLs, extracted EXIF) as JSON."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from schemas import errors
from server.endpoint import Access, Call, Endpoint
from server.media import may_see_original
from server.models.observations import Photo
from server.photos import photo_record


async def read_photo(call: Call) -> Response:
    user = call.require_user()
    photo_id = call.request.path_params["photo_id"][:36]
    photo = await Photo.get_or_none(id=photo_id, is_deleted=False).select_related("observation")
    if photo is None or not await may_see_original(user, photo):
        raise errors.NotFound(f"There is no photo {photo_id!r} you may see.")
    return JSONResponse(photo_record(photo))


ENDPOINTS = [
    Endpoint("GET", "/api/v1/photos/{photo_id}", read_photo,
             "A photo record: upload state, derivative URLs, extracted EXIF (owner, reviewers)",
             Access.USER, response_schema="photo", tags=("photos",)),
]
