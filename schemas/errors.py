"""Domain errors, and the stable codes clients see.

Every error a client can cause is one of these; the server maps each to one
JSON shape, ``{"error": {"code", "message", "details"}}``, with the HTTP status
given here.  Codes are part of the contract: never rename one.

    PhenosyncError
    ├── BadRequest (400)
    │   ├── InvalidJSON            invalid_json
    │   └── InvalidParameter       invalid_parameter
    ├── ValidationFailed (422)     validation_failed
    │   └── InvalidPhoto           invalid_photo
    ├── NotAuthenticated (401)     not_authenticated
    │   └── InvalidCredentials     invalid_credentials
    ├── PermissionDenied (403)     permission_denied
    ├── NotFound (404)             not_found
    ├── MethodNotAllowed (405)     method_not_allowed
    ├── Conflict (409)             conflict
    │   ├── AlreadyExists          already_exists
    │   └── OffsetMismatch         offset_mismatch
    ├── Gone (410)                 gone
    ├── PreconditionFailed (412)   unsupported_version
    │   ├── NotInQueue             not_in_queue
    │   ├── NotClaimed             not_claimed
    │   └── LeaseExpired           lease_expired
    ├── PayloadTooLarge (413)      payload_too_large
    ├── UnsupportedMediaType (415) unsupported_media_type
    ├── Locked (423)               locked
    ├── UpgradeRequired (426)      upgrade_required
    ├── TooManyRequests (429)      too_many_requests
    ├── ServiceUnavailable (503)   service_unavailable
    └── ChecksumMismatch (460)     checksum_mismatch   (tus 1.0 checksum extension)
"""

from __future__ import annotations

from typing import Any


class PhenosyncError(Exception):
    status = 500
    code = "internal_error"
    default_message = "Something went wrong on the server."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(PhenosyncError):
    status = 400
    code = "bad_request"
    default_message = "The request could not be understood."


class InvalidJSON(BadRequest):
    code = "invalid_json"
    default_message = "The request body is not valid JSON."


class InvalidParameter(BadRequest):
    code = "invalid_parameter"
    default_message = "A query parameter has a value that is not allowed."


class ValidationFailed(PhenosyncError):
    status = 422
    code = "validation_failed"
    default_message = "The request body does not match the expected schema."


class InvalidPhoto(ValidationFailed):
    code = "invalid_photo"
    default_message = "The uploaded file is not an image the server accepts."


class NotAuthenticated(PhenosyncError):
    status = 401
    code = "not_authenticated"
    default_message = "Send a bearer token: 'Authorization: Bearer <token>'."


class InvalidCredentials(NotAuthenticated):
    code = "invalid_credentials"
    default_message = "Unknown user name or wrong password."


class PermissionDenied(PhenosyncError):
    status = 403
    code = "permission_denied"
    default_message = "Your role does not allow this."


class NotFound(PhenosyncError):
    status = 404
    code = "not_found"
    default_message = "Nothing exists at this address."


class MethodNotAllowed(PhenosyncError):
    status = 405
    code = "method_not_allowed"
    default_message = "This address does not accept that HTTP method."


class Conflict(PhenosyncError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class AlreadyExists(Conflict):
    code = "already_exists"
    default_message = "That already exists."


class OffsetMismatch(Conflict):
    code = "offset_mismatch"
    default_message = "Upload-Offset does not match the stored offset: ask with HEAD and resume."


class Gone(PhenosyncError):
    status = 410
    code = "gone"
    default_message = "This no longer exists."


class PreconditionFailed(PhenosyncError):
    status = 412
    code = "unsupported_version"
    default_message = "This protocol version is not supported."
class NotInQueue(Conflict):
    code = "not_in_queue"
    default_message = "This record is not waiting for review."


class NotClaimed(Conflict):
    code = "not_claimed"
    default_message = "Claim the record before deciding it: POST /api/v1/review/claims."


class LeaseExpired(Conflict):
    code = "lease_expired"
    default_message = "Your claim on this record has expired: claim it again."


class PayloadTooLarge(PhenosyncError):
    status = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class UnsupportedMediaType(PhenosyncError):
    status = 415
    code = "unsupported_media_type"
    default_message = "Send the body as 'Content-Type: application/json'."


class Locked(PhenosyncError):
    status = 423
    code = "locked"
    default_message = "Another request is writing to this right now: retry shortly."


class UpgradeRequired(PhenosyncError):
    status = 426
    code = "upgrade_required"
    default_message = "This app version is too old for the server: update the app."


class TooManyRequests(PhenosyncError):
    status = 429
    code = "too_many_requests"
    default_message = "Too many requests: wait and try again."


class ServiceUnavailable(PhenosyncError):
    status = 503
    code = "service_unavailable"
    default_message = "The service is not available right now."


class ChecksumMismatch(PhenosyncError):
    """tus 1.0 checksum extension: the body does not match ``Upload-Checksum``."""

    status = 460
    code = "checksum_mismatch"
    default_message = "The request body does not match its Upload-Checksum: send it again."
