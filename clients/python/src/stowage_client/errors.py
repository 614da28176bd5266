"""Typed errors: one class per error kind of the API's `{"error": kind, "message": text}`.

Every failure the client raises is a `StowageError`; no bare HTTP or socket error escapes.
Messages come from the host (which never puts a key in them) or from this package (which
never formats a header), and `repr` shows the kind, status and message only.
"""

from __future__ import annotations

import json
from typing import Optional


class StowageError(Exception):
    """A request failed. `kind` is the API's error kind (`not-found`, ...), `status` the HTTP
    status (`None` when no answer came), `request_id` the `x-request-id` to find it in the
    host's log and ledger."""

    kind: str = "error"

    def __init__(
        self,
        message: str,
        *,
        kind: Optional[str] = None,
        status: Optional[int] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.message = message
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        extras = [f"status {self.status}"] if self.status is not None else []
        if self.request_id:
            extras.append(f"request {self.request_id}")
        return f"{self.kind}: {self.message}" + (f" ({', '.join(extras)})" if extras else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, status={self.status!r}, message={self.message!r})"


class NotFound(StowageError):
    """No such object, storage name or upload session."""

    kind = "not-found"


class AlreadyExists(StowageError):
    """A create-only write (`If-None-Match: *`) found an object there."""

    kind = "already-exists"


class Denied(StowageError):
    """A policy refused, or the host refused the API key (a bare 401), or a signed URL is
    tampered or expired."""

    kind = "denied"


class InvalidPath(StowageError):
    """The object path breaks the path rules; the message says which rule."""

    kind = "invalid-path"


class InvalidRange(StowageError):
    """The requested range lies outside the object."""

    kind = "invalid-range"


class Unsupported(StowageError):
    """The disk cannot do this."""

    kind = "unsupported"


class Unavailable(StowageError):
    """The host or its backend cannot be reached now, after the client's bounded retries."""

    kind = "unavailable"


class AuditUnavailable(Unavailable):
    """The host's ledger cannot record the operation, so it did not happen."""

    kind = "audit-unavailable"


class TooManyRequests(StowageError):
    """This key is over one of the host's limits (requests or upload sessions in flight)."""

    kind = "too-many-requests"


class DigestMismatch(StowageError):
    """The bytes do not have the sha256 that was sent or recorded (on upload: nothing was
    stored; on download: the bytes read are not the object's)."""

    kind = "digest-mismatch"


class TooLarge(StowageError):
    """The object is larger than the disk takes."""

    kind = "too-large"


class QuotaExceeded(StowageError):
    """The disk's quota would be passed; nothing was stored."""

    kind = "quota-exceeded"


class NoSpace(StowageError):
    """The disk is full; nothing was stored."""

    kind = "no-space"


class PluginFault(StowageError):
    """A plugin on the host trapped or broke the contract."""

    kind = "plugin-fault"


class UnknownName(StowageError):
    """No storage class or disk by that name on the host."""

    kind = "unknown-name"


class BadAddress(StowageError):
    """The address is not `NAME:PATH`."""

    kind = "bad-address"


class BadRequest(StowageError):
    """The host found the request malformed (a header, a query)."""

    kind = "bad-request"


class IoError(StowageError):
    """Any other failure of the backend or the host (the detail is in the host's log)."""

    kind = "io"


_BY_KIND: dict[str, type[StowageError]] = {
    cls.kind: cls
    for cls in (
        NotFound,
        AlreadyExists,
        Denied,
        InvalidPath,
        InvalidRange,
        Unsupported,
        Unavailable,
        AuditUnavailable,
        TooManyRequests,
        DigestMismatch,
        TooLarge,
        QuotaExceeded,
        NoSpace,
        PluginFault,
        UnknownName,
        BadAddress,
        BadRequest,
        IoError,
    )
}

# Kinds for answers without a JSON body (a HEAD, a bare 401/403, a proxy's page).
_BY_STATUS: dict[int, type[StowageError]] = {
    400: BadRequest,
    401: Denied,
    403: Denied,
    404: NotFound,
    412: AlreadyExists,
    413: TooLarge,
    416: InvalidRange,
    429: TooManyRequests,
    501: Unsupported,
    503: Unavailable,
    507: NoSpace,
}


def from_answer(
    status: int, body: bytes, kind_header: Optional[str], request_id: Optional[str]
) -> StowageError:
    """The error an answer with a failure status stands for."""
    kind, message = kind_header, ""
    try:
        problem = json.loads(body.decode("utf-8")) if body else None
        if isinstance(problem, dict):
            kind = str(problem.get("error") or kind or "")
            message = str(problem.get("message") or "")
    except (UnicodeDecodeError, ValueError):
        pass
    cls = _BY_KIND.get(kind or "") or _BY_STATUS.get(status) or StowageError
    if not message:
        message = {
            401: "the host refused the API key",
            403: "refused (a tampered or expired signed URL, or a policy)",
        }.get(status, f"the host answered {status}")
    return cls(message, kind=kind or cls.kind, status=status, request_id=request_id)
