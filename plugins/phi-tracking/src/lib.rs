//! PHI tracking: a ledger record for every create, read, delete and failure, with the
//! fields a PHI audit needs (cohort, actor, action, path, file type, size, sha256, metadata,
//! error), and on PHI
//! classes for every other access too: lookups (stat, HEAD, exists), listings and URLs issued.
//! Files in temporary classes get `cleanup_required` and a deadline; deleting one records it
//! gone.
//!
//! Creates, deletes and reads are recorded *before* they take effect (`phase::before`: the
//! host makes the record durable first, and refuses the operation if it cannot be), failures
//! after. The host stamps every record with the credential, purpose, listing size and URL id.
//!
//! Config (all optional): `phi_classes` (default `scratch,submission`: every access is
//! recorded there, and for requests that name a disk directly), `record` (default
//! `put,get,delete`: what is recorded on other classes), `record_reads` (default `true`;
//! `false` leaves reads out of `record`), `temporary_classes` (default `scratch`),
//! `cleanup_within_secs` (0 to a year, default 7200: scratch files are due for deletion within
//! two hours). A value it cannot use (an operation it does not know, a number that is not
//! one) keeps the host from starting, naming the key. Cohort and file type come from the
//! request metadata (`cohort`, `file_type`), else from the object's metadata.

use std::sync::OnceLock;

use stowage_plugin_sdk::Describe;
use stowage_plugin_sdk::policy::exports::stowage::storage::policy_hooks::{
    Decision, Guest, HookInterests, OperationOutcome, OperationRequest, OperationSet, Phase,
};
use stowage_plugin_sdk::policy::stowage::storage::ledger::{TrackingRecord, append};
use stowage_plugin_sdk::policy::stowage::storage::log::{Level, log};
use stowage_plugin_sdk::policy::stowage::storage::types::{Capabilities, Operation};
use stowage_plugin_sdk::settings::{ConfigError, policy_config, refuse};

struct PhiTracking;

fn lookup(pairs: &[(String, String)], keys: &[&str]) -> Option<String> {
    pairs.iter().find(|(k, _)| keys.contains(&k.as_str())).map(|(_, v)| v.clone())
}

/// The policy's config, read once per instance (it cannot change while the instance lives).
struct Settings {
    temporary_classes: Vec<String>,
    cleanup_within_secs: u64,
    phi_classes: Vec<String>,
    /// What is recorded outside the PHI classes.
    record: OperationSet,
}

fn operation_bit(op: Operation) -> OperationSet {
    match op {
        Operation::Put => OperationSet::PUT,
        Operation::Get => OperationSet::GET,
        Operation::Stat => OperationSet::STAT,
        Operation::Exists => OperationSet::EXISTS,
        Operation::List => OperationSet::LIST,
        Operation::Delete => OperationSet::DELETE,
        Operation::Url => OperationSet::URL,
    }
}

/// The longest `cleanup_within_secs`: a year.
const MAX_CLEANUP_SECS: u64 = 365 * 86_400;

impl Settings {
    fn load() -> Result<Settings, ConfigError> {
        let config = policy_config("phi-tracking policy");
        let mut record = OperationSet::empty();
        for name in config.list_or("record", "put,get,delete") {
            record = record
                | operation_named(&name).ok_or_else(|| {
                    config.error(
                        "record",
                        &format!(
                            "names `{name}`, which is not an operation (put, get, stat, exists, list, delete, url)"
                        ),
                    )
                })?;
        }
        if !config.boolean("record_reads", true)? {
            record = OperationSet::from_bits_retain(record.bits() & !OperationSet::GET.bits());
        }
        Ok(Settings {
            temporary_classes: config.list_or("temporary_classes", "scratch"),
            cleanup_within_secs: config.number("cleanup_within_secs", 7200, 0..=MAX_CLEANUP_SECS)?,
            phi_classes: config.list_or("phi_classes", "scratch,submission"),
            record,
        })
    }
}

fn operation_named(name: &str) -> Option<OperationSet> {
    Some(match name {
        "put" => OperationSet::PUT,
        "get" => OperationSet::GET,
        "stat" => OperationSet::STAT,
        "exists" => OperationSet::EXISTS,
        "list" => OperationSet::LIST,
        "delete" => OperationSet::DELETE,
        "url" => OperationSet::URL,
        _ => return None,
    })
}

/// The settings; a bad value stops the policy (in `interests`, so the host does not start).
fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings::load().unwrap_or_else(|e| refuse(&e)))
}

impl Guest for PhiTracking {
    fn interests() -> HookInterests {
        // Never refuses anything. Everything on PHI classes, `record` on the others.
        let settings = settings();
        let observe =
            if settings.phi_classes.is_empty() { settings.record } else { stowage_plugin_sdk::all_operations() };
        HookInterests { check: OperationSet::empty(), observe, needs: Capabilities::empty() }
    }

    fn check(_request: OperationRequest) -> Decision {
        Decision::Allow
    }

    fn observe(outcome: OperationOutcome) {
        let request = &outcome.request;
        let ctx = &request.ctx;
        let settings = settings();
        let phi = match &ctx.class {
            Some(class) => settings.phi_classes.contains(class),
            // Addressed by disk name: no class vouches for it, so it is treated as PHI.
            None => true,
        };
        if !phi && (settings.record & operation_bit(request.operation)).bits() == 0 {
            return;
        }
        let temporary = ctx.class.as_ref().is_some_and(|c| settings.temporary_classes.contains(c));
        let failed = outcome.error.is_some();
        // What happened is recorded before it takes effect; what failed, after.
        let action = match (outcome.phase, request.operation, failed) {
            (Phase::Before, Operation::Put, _) if temporary => "work_copy_created",
            (Phase::Before, Operation::Put, _) => "file_created",
            (Phase::Before, Operation::Delete, _) if temporary => "work_copy_deleted",
            (Phase::Before, Operation::Delete, _) => "file_deleted",
            (Phase::Before, Operation::Get, _) => "file_accessed",
            (Phase::Before, _, _) => return,
            (Phase::After, Operation::Put, true) => "creation_failed",
            (Phase::After, Operation::Delete, true) => "deletion_failed",
            (Phase::After, Operation::Get, true) => "access_failed",
            (Phase::After, Operation::Put | Operation::Delete | Operation::Get, false) => return,
            (Phase::After, Operation::Stat | Operation::Exists, false) => "metadata_accessed",
            (Phase::After, Operation::Stat | Operation::Exists, true) => "lookup_failed",
            (Phase::After, Operation::List, false) => "listed",
            (Phase::After, Operation::List, true) => "list_failed",
            (Phase::After, Operation::Url, false) => "url_issued",
            (Phase::After, Operation::Url, true) => "url_failed",
        };
        let cleanup_required = action == "work_copy_created";
        let record = TrackingRecord {
            action: action.to_string(),
            path: request.path.clone(),
            disk: ctx.disk.clone(),
            class: ctx.class.clone(),
            actor: ctx.actor.clone(),
            cohort: lookup(&ctx.metadata, &["cohort"]).or_else(|| lookup(&request.object_metadata, &["cohort"])),
            file_type: lookup(&ctx.metadata, &["file_type", "file-type"])
                .or_else(|| lookup(&request.object_metadata, &["file_type", "file-type"])),
            size: outcome.size,
            sha256: outcome.sha256.clone(),
            metadata: request.object_metadata.clone(),
            error: outcome.error.as_ref().map(|e| Describe(e).to_string()),
            cleanup_required,
            cleanup_within_secs: cleanup_required.then_some(settings.cleanup_within_secs),
            request_id: ctx.request_id.clone(),
        };
        // The host sees a failed append too, and refuses the operation: this policy is
        // required by default.
        if let Err(e) = append(&record) {
            log(Level::Error, &format!("could not append to the PHI ledger: {e}"));
        }
    }
}

stowage_plugin_sdk::policy::export_policy!(PhiTracking with_types_in stowage_plugin_sdk::policy);
