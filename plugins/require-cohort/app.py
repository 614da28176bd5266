"""require-cohort: a Stowage policy written in Python.

Submissions must say which cohort they belong to. A write (`put`) to one of the guarded storage
classes is refused unless the request carries a `cohort` (request metadata, as `stowage
--cohort NAME` sends it, or the object's own `cohort` metadata). With `cohorts` set, the cohort
must also be one of those listed. A write addressed to a disk by name (not through a class)
is guarded too: it could otherwise go around the rule.

Config (all optional):
    classes = "submission"        # guarded storage classes, comma-separated ("*" for all;
                                  # empty also guards all: the policy fails closed)
    cohorts = "VACS,ADNI"         # the only cohorts accepted; empty accepts any

Built into a WebAssembly component with componentize-py (see README.md). The host calls
`check` only for writes (see `interests`); the policy never sees object bytes.
"""

import functools

from wit_world import exports
from wit_world.exports import policy_hooks as hooks
from wit_world.imports import config, log, types


def _setting(key: str, default: str) -> list[str]:
    value = config.get(key)
    if value is None:
        value = default
    return [v.strip() for v in value.split(",") if v.strip()]


@functools.cache
def _settings() -> tuple[list[str], list[str]]:
    """(guarded classes, accepted cohorts), read once per instance: config cannot change while
    an instance lives. Read on first use, not at import: componentize-py runs the module's
    top level at build time, when there is no host to ask."""
    return _setting("classes", "submission"), _setting("cohorts", "")


class PolicyHooks(exports.PolicyHooks):
    def interests(self) -> hooks.HookInterests:
        return hooks.HookInterests(
            check=hooks.OperationSet.PUT,
            observe=hooks.OperationSet(0),
            needs=types.Capabilities(0),
        )

    def check(self, request: hooks.OperationRequest) -> hooks.Decision:
        if request.operation != types.Operation.PUT:
            return hooks.Decision_Allow()
        classes, cohorts = _settings()
        target = request.ctx.class_
        guarded = not classes or "*" in classes or target is None or target in classes
        if not guarded:
            return hooks.Decision_Allow()
        cohort = _cohort(request.ctx.metadata) or _cohort(request.object_metadata)
        if not cohort:
            where = target if target is not None else f"disk {request.ctx.disk}"
            return hooks.Decision_Deny(f"writes to `{where}` need a cohort (stowage --cohort NAME)")
        if cohorts and cohort not in cohorts:
            log.log(log.Level.INFO, f"refused unknown cohort for request {request.ctx.request_id}")
            return hooks.Decision_Deny(
                f"cohort `{cohort}` is not one of {', '.join(cohorts)}"
            )
        return hooks.Decision_Allow()

    def observe(self, outcome: hooks.OperationOutcome) -> None:
        pass


def _cohort(metadata: list[tuple[str, str]]) -> str:
    for key, value in metadata:
        if key == "cohort" and value.strip():
            return value.strip()
    return ""
