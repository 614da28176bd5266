//! {{name}}: a Stowage policy. It refuses to store files whose name ends in one of the
//! extensions its config lists (`deny_extensions = "exe,bat"`) and allows everything else.
//!
//! The host asks `check` before every operation the policy declares in `interests` and tells
//! `observe` the outcome of those it observes. Policies never see object bytes.

wit_bindgen::generate!({ world: "policy", path: "wit", generate_all });

use exports::stowage::storage::policy_hooks::{
    Decision, Guest, HookInterests, OperationOutcome, OperationRequest, OperationSet,
};
use stowage::storage::config;
use stowage::storage::types::{Capabilities, Operation};

struct Policy;

impl Guest for Policy {
    fn interests() -> HookInterests {
        // Only writes are checked; nothing is observed; no optional driver capability needed.
        HookInterests { check: OperationSet::PUT, observe: OperationSet::empty(), needs: Capabilities::empty() }
    }

    fn check(request: OperationRequest) -> Decision {
        if request.operation != Operation::Put {
            return Decision::Allow;
        }
        let denied = config::get("deny_extensions").unwrap_or_default();
        let name = request.path.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
        for ext in denied.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if name.ends_with(&format!(".{}", ext.to_ascii_lowercase())) {
                return Decision::Deny(format!("`.{ext}` files may not be stored here"));
            }
        }
        Decision::Allow
    }

    fn observe(_outcome: OperationOutcome) {}
}

export!(Policy);
