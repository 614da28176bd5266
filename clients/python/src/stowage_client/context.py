"""Whom and what a request is for: the actor, cohort, purpose and request id that go into the
host's ledger. Given per client, per block of code (`using`, which the Django middleware uses
for the request's user) or per call; the narrower one wins, field by field."""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Iterator, Optional


@dataclass(frozen=True)
class Context:
    """The request fields a call carries (`x-stowage-actor`, `x-stowage-cohort`,
    `x-stowage-purpose`, `x-request-id`); `None` leaves a field to the wider context."""

    actor: Optional[str] = None
    cohort: Optional[str] = None
    purpose: Optional[str] = None
    request_id: Optional[str] = None

    def over(self, wider: "Context") -> "Context":
        """This context with its unset fields taken from `wider`."""
        return replace(
            wider, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        )

    def headers(self) -> dict[str, str]:
        """The request headers for the fields that are set."""
        names = {
            "actor": "x-stowage-actor",
            "cohort": "x-stowage-cohort",
            "purpose": "x-stowage-purpose",
            "request_id": "x-request-id",
        }
        return {names[f.name]: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


_current: contextvars.ContextVar[Context] = contextvars.ContextVar("stowage_context", default=Context())


def current() -> Context:
    """The context `using` blocks have set here (empty outside any)."""
    return _current.get()


@contextmanager
def using(
    actor: Optional[str] = None,
    cohort: Optional[str] = None,
    purpose: Optional[str] = None,
    request_id: Optional[str] = None,
) -> Iterator[Context]:
    """Within the block, every call of every client (and Django storage) in this thread or task
    carries these fields, unless the call or a narrower block says otherwise."""
    ctx = Context(actor, cohort, purpose, request_id).over(_current.get())
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
