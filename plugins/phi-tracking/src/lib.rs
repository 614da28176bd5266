//! PHI tracking: a ledger record for every create, read, delete and failure, with the seed's
//! fields (cohort, actor, action, path, file type, size, sha256, metadata, error). Files in
//! temporary classes get `cleanup_required` and a deadline; deleting one records it gone.
//!
//! Config (all optional): `temporary_classes` (default `scratch`), `cleanup_within_secs`
//! (default 7200, the seed's two hours), `record_reads` (default `true`).
//! Cohort and file type come from the request metadata (`cohort`, `file_type`), else from the
//! object's metadata.

use std::sync::OnceLock;

use stowage_plugin_sdk::config_list;
use stowage_plugin_sdk::policy::exports::stowage::storage::policy_hooks::{
    Decision, Guest, HookInterests, OperationOutcome, OperationRequest, OperationSet,
};
use stowage_plugin_sdk::policy::stowage::storage::ledger::{TrackingRecord, append};
use stowage_plugin_sdk::policy::stowage::storage::log::{Level, log};
use stowage_plugin_sdk::policy::stowage::storage::types::{Capabilities, Error, Operation};
use stowage_plugin_sdk::policy::stowage::storage::config;

struct PhiTracking;

fn lookup(pairs: &[(String, String)], keys: &[&str]) -> Option<String> {
    pairs.iter().find(|(k, _)| keys.contains(&k.as_str())).map(|(_, v)| v.clone())
}

fn error_text(e: &Error) -> String {
    match e {
        Error::NotFound(p) => format!("not found: {p}"),
        Error::AlreadyExists(p) => format!("already exists: {p}"),
        Error::Denied(r) => format!("denied: {r}"),
        Error::InvalidPath(r) => format!("invalid path: {r}"),
        Error::InvalidRange(r) => format!("invalid range: {r}"),
        Error::Unsupported(r) => format!("unsupported: {r}"),
        Error::Unavailable(u) => format!("unavailable: {}", u.reason),
        Error::Io(r) => format!("i/o error: {r}"),
    }
}

/// The policy's config, read once per instance (it cannot change while the instance lives).
struct Settings {
    temporary_classes: Vec<String>,
    cleanup_within_secs: u64,
    record_reads: bool,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        temporary_classes: config_list(&config::get("temporary_classes").unwrap_or_else(|| "scratch".into())),
        cleanup_within_secs: config::get("cleanup_within_secs").and_then(|v| v.parse().ok()).unwrap_or(7200),
        record_reads: config::get("record_reads").is_none_or(|v| v != "false"),
    })
}

impl Guest for PhiTracking {
    fn interests() -> HookInterests {
        // Never refuses anything; records creates, reads and deletes.
        let mut observe = OperationSet::PUT | OperationSet::DELETE;
        if settings().record_reads {
            observe = observe | OperationSet::GET;
        }
        HookInterests { check: OperationSet::empty(), observe, needs: Capabilities::empty() }
    }

    fn check(_request: OperationRequest) -> Decision {
        Decision::Allow
    }

    fn observe(outcome: OperationOutcome) {
        let request = &outcome.request;
        let ctx = &request.ctx;
        let settings = settings();
        let temporary = ctx.class.as_ref().is_some_and(|c| settings.temporary_classes.contains(c));
        let failed = outcome.error.is_some();
        let action = match (request.operation, failed) {
            (Operation::Put, false) if temporary => "work_copy_created",
            (Operation::Put, false) => "file_created",
            (Operation::Put, true) => "creation_failed",
            (Operation::Get, false) => "file_accessed",
            (Operation::Get, true) => "access_failed",
            (Operation::Delete, false) if temporary => "work_copy_deleted",
            (Operation::Delete, false) => "file_deleted",
            (Operation::Delete, true) => "deletion_failed",
            _ => return,
        };
        if request.operation == Operation::Get && !settings.record_reads {
            return;
        }
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
            error: outcome.error.as_ref().map(error_text),
            cleanup_required,
            cleanup_within_secs: cleanup_required.then_some(settings.cleanup_within_secs),
            request_id: ctx.request_id.clone(),
        };
        if let Err(e) = append(&record) {
            log(Level::Error, &format!("could not append to the PHI ledger: {e}"));
        }
    }
}

stowage_plugin_sdk::policy::export_policy!(PhiTracking with_types_in stowage_plugin_sdk::policy);
