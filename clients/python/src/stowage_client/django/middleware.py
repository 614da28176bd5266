"""`ActorMiddleware`: every Stowage call made while a request is served carries the request's
user as the actor (and its `X-Request-ID`, when the caller sent one), so the host's ledger
says who. Put it after `AuthenticationMiddleware`."""

from __future__ import annotations

from typing import Any, Callable

from ..context import using


class ActorMiddleware:
    """Sets the actor (the authenticated user's username) for the request's duration. Files
    opened meanwhile keep it, also when a `FileResponse` streams them after the view returned."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        user = getattr(request, "user", None)
        actor = user.get_username() if user is not None and user.is_authenticated else None
        with using(actor=actor, request_id=request.headers.get("X-Request-ID")):
            return self.get_response(request)
