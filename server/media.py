"""Serving photo bytes: public derivatives, and originals to those who may see them.

Derivatives carry no metadata at all (``server/images.py``), so anyone may
fetch them; they are named by content, so they are cached for long.  An
original still has its EXIF (often the exact position), so only its owner,
the reviewers, experts and coordinators of the observation's project, and
admins get it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from schemas import errors
from schemas.observation import UploadState
from schemas.roles import GlobalRole, ProjectRole, project_role_at_least
from server.endpoint import Access, identify
from server.errors import error_response
from server.models.accounts import Membership, User
from server.models.observations import Photo
from server.openapi import raw_operation
from server.photos import derivative_key
from server.storage import Storage, StorageKeyError

log = logging.getLogger("phenosync.media")

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic"}


async def ready_photo(photo_id: str) -> Photo:
    photo = await Photo.get_or_none(id=photo_id[:36], is_deleted=False).select_related(
        "observation"
    )
    if photo is None or photo.observation.is_deleted:
        raise errors.NotFound(f"There is no photo {photo_id[:36]!r}.")
    if photo.upload_state != UploadState.READY:
        raise errors.NotFound(
            f"Photo {photo.id!r} is not ready yet (upload state: {photo.upload_state}).",
            code="photo_not_ready",
        )
    return photo


async def may_see_original(user: User, photo: Photo) -> bool:
    if user.role == GlobalRole.ADMIN or photo.user_id == user.id:  # type: ignore[attr-defined]
        return True
    membership = await Membership.get_or_none(
        user_id=user.id, project_id=photo.observation.project_id  # type: ignore[attr-defined]
    )
    return membership is not None and project_role_at_least(membership.role, ProjectRole.REVIEWER)


class MediaServer:
    OPENAPI: dict[str, dict[str, Any]] = {
        "/api/v1/photos/{photo_id}/derivatives/{size}": {
            "get": raw_operation(
                "photo_derivative", "A metadata-free JPEG of a ready photo (size 320, 1024 "
                "or 2048 px long edge)", Access.PUBLIC,
                {200: "The JPEG.", 304: "Not modified (ETag).", 404: "No such photo or size."},
                tags=("photos",), content_type="image/jpeg"),
        },
        "/api/v1/photos/{photo_id}/original": {
            "get": raw_operation(
                "photo_original", "The original file, EXIF and all (owner, project "
                "reviewers, experts, coordinators, admins)", Access.USER,
                {200: "The file.", 401: "No or bad token.", 403: "Not yours to see.",
                 404: "No such photo, or not ready."},
                tags=("photos",), content_type="application/octet-stream"),
        },
    }

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/photos/{photo_id}/derivatives/{size}", self._safe(self.derivative),
                  methods=["GET"], name="photo_derivative"),
            Route("/api/v1/photos/{photo_id}/original", self._safe(self.original),
                  methods=["GET"], name="photo_original"),
        ]

    @staticmethod
    def _safe(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.PhenosyncError as error:
                return error_response(error)

        return endpoint

    async def _send(self, key: str, content_type: str, headers: dict[str, str]) -> Response:
        try:
            size = await self.storage.size(key)
        except StorageKeyError:
            log.error("media key %r leads out of the media directory: not served", key)
            size = None
        if size is None:
            raise errors.NotFound("The file of this photo is missing.", code="file_missing")
        headers = {**headers, "Content-Length": str(size), "X-Content-Type-Options": "nosniff"}
        return StreamingResponse(
            self.storage.stream(key), media_type=content_type, headers=headers
        )

    async def derivative(self, request: Request) -> Response:
        size_text = request.path_params["size"]
        photo = await ready_photo(request.path_params["photo_id"])
        sizes = photo.derivative_sizes or []
        if not size_text.isdigit() or int(size_text) not in sizes:
            raise errors.NotFound(
                f"There is no derivative of size {size_text[:8]!r}; sizes: {sizes}.",
                details={"sizes": sizes},
            )
        assert photo.sha256 is not None
        etag = f'"{photo.sha256[:32]}-{size_text}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return await self._send(
            derivative_key(photo.sha256, int(size_text)), "image/jpeg",
            {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"},
        )

    async def original(self, request: Request) -> Response:
        user, _ = await identify(request)
        if user is None:
            raise errors.NotAuthenticated()
        photo = await ready_photo(request.path_params["photo_id"])
        if not await may_see_original(user, photo):
            raise errors.PermissionDenied(
                "Originals keep their EXIF (often an exact position): only the observer, "
                "the project's reviewers and admins may download them; use a derivative."
            )
        content_type = photo.content_type or "application/octet-stream"
        name = f"{photo.id}.{_EXTENSIONS.get(content_type, 'bin')}"
        assert photo.storage_key is not None
        return await self._send(
            photo.storage_key, content_type,
            {"Cache-Control": "private, no-store",
             "Content-Disposition": f'attachment; filename="{name}"'},
        )
