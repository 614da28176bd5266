"""{{name}}: a Stowage policy in Python. It refuses to store files whose name ends in one of
the extensions its config lists (`deny_extensions = "exe,bat"`) and allows everything else.

The host asks `check` before every operation the policy declares in `interests` and tells
`observe` the outcome of those it observes. Policies never see object bytes.
"""

from wit_world import exports
from wit_world.exports import policy_hooks as hooks
from wit_world.imports import config, types


class PolicyHooks(exports.PolicyHooks):
    def interests(self) -> hooks.HookInterests:
        # Only writes are checked; nothing is observed; no optional driver capability needed.
        return hooks.HookInterests(
            check=hooks.OperationSet.PUT,
            observe=hooks.OperationSet(0),
            needs=types.Capabilities(0),
        )

    def check(self, request: hooks.OperationRequest) -> hooks.Decision:
        if request.operation != types.Operation.PUT:
            return hooks.Decision_Allow()
        denied = config.get("deny_extensions") or ""
        name = request.path.rsplit("/", 1)[-1].lower()
        for ext in (e.strip().lower() for e in denied.split(",")):
            if ext and name.endswith("." + ext):
                return hooks.Decision_Deny(f"`.{ext}` files may not be stored here")
        return hooks.Decision_Allow()

    def observe(self, outcome: hooks.OperationOutcome) -> None:
        pass
