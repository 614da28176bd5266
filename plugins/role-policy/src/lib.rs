//! The server-role policy: which disks a host of each role may reach, as a policy component.
//!
//! - role `web`: requests for PHI classes (`scratch`, `submission` by default), and requests
//!   that name a disk directly, may only reach a remote driver; anything else is denied. A web
//!   host never keeps PHI on its own disks.
//! - role `services`: a remote driver is allowed but logged as a likely misconfiguration.
//! - role `testing`: everything is allowed.
//!
//! Config (all optional): `phi_classes` (default `scratch,submission`), `remote_drivers`
//! (default `remote`).

use std::sync::OnceLock;

use stowage_plugin_sdk::policy::exports::stowage::storage::policy_hooks::{
    Decision, Guest, HookInterests, OperationOutcome, OperationRequest, OperationSet,
};
use stowage_plugin_sdk::policy::stowage::storage::log::{Level, log};
use stowage_plugin_sdk::policy::stowage::storage::types::{Capabilities, ServerRole};
use stowage_plugin_sdk::settings::policy_config;

struct RolePolicy;

/// The policy's config, read once per instance (it cannot change while the instance lives).
struct Settings {
    phi_classes: Vec<String>,
    remote_drivers: Vec<String>,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let config = policy_config("role-policy policy");
        Settings {
            phi_classes: config.list_or("phi_classes", "scratch,submission"),
            remote_drivers: config.list_or("remote_drivers", "remote"),
        }
    })
}

impl Guest for RolePolicy {
    fn interests() -> HookInterests {
        // Decides on everything; records nothing.
        HookInterests {
            check: stowage_plugin_sdk::all_operations(),
            observe: OperationSet::empty(),
            needs: Capabilities::empty(),
        }
    }

    fn check(request: OperationRequest) -> Decision {
        let ctx = &request.ctx;
        let settings = settings();
        let remote = settings.remote_drivers.contains(&ctx.driver);
        match ctx.role {
            ServerRole::Testing => Decision::Allow,
            ServerRole::Services => {
                if remote {
                    log(
                        Level::Warn,
                        &format!(
                            "services host using the remote driver for disk `{}`: possible misconfiguration",
                            ctx.disk
                        ),
                    );
                }
                Decision::Allow
            }
            ServerRole::Web => {
                let phi = match &ctx.class {
                    Some(class) => settings.phi_classes.contains(class),
                    // Addressed by disk name: no class to vouch for it, so treat it as PHI.
                    None => true,
                };
                if !phi || remote {
                    return Decision::Allow;
                }
                let via =
                    ctx.class.as_deref().map_or_else(|| format!("disk `{}`", ctx.disk), |c| format!("class `{c}`"));
                Decision::Deny(format!(
                    "web hosts never keep PHI on their own disks: {via} is served by the `{}` driver, not a remote one",
                    ctx.driver
                ))
            }
        }
    }

    fn observe(_outcome: OperationOutcome) {}
}

stowage_plugin_sdk::policy::export_policy!(RolePolicy with_types_in stowage_plugin_sdk::policy);
