//! The one place where generated WIT types and the host's own types are converted.

use crate::bindings::{wit, wit_ledger, wit_policy};
use crate::error::StorageError;
use crate::ledger::Record;
use crate::policy::types::{OperationOutcome, OperationRequest, Phase};
use crate::types::{
    ByteRange, Capabilities, ListPage, ObjectInfo, Operation, OperationSet, RequestContext, Role, TempObject, TempPage,
    WriteOptions,
};

/// A driver's answer (a value of the WIT `error` variant) as the host's error.
pub fn error_from_wit(e: wit::Error) -> StorageError {
    match e {
        wit::Error::NotFound(p) => StorageError::NotFound(p),
        wit::Error::AlreadyExists(p) => StorageError::AlreadyExists(p),
        wit::Error::Denied(r) => StorageError::Denied(r),
        wit::Error::InvalidPath(r) => StorageError::InvalidPath(r),
        wit::Error::InvalidRange(r) => StorageError::InvalidRange(r),
        wit::Error::Unsupported(op) => StorageError::Unsupported(op),
        wit::Error::Unavailable(u) => StorageError::Unavailable { reason: u.reason, retryable: u.retryable },
        wit::Error::Io(r) => StorageError::Io(r),
    }
}

/// Object info from a driver.
pub fn info_from_wit(i: wit::ObjectInfo) -> ObjectInfo {
    ObjectInfo {
        path: i.path,
        size: i.size,
        sha256: i.sha256,
        content_type: i.content_type,
        modified: i.modified,
        etag: i.etag,
        metadata: i.metadata,
        fallback: None,
    }
}

/// A listing page from a driver.
pub fn page_from_wit(p: wit::ListPage) -> ListPage {
    ListPage { items: p.items.into_iter().map(info_from_wit).collect(), next_cursor: p.next_cursor }
}

/// Declared capabilities from a driver.
pub fn capabilities_from_wit(c: wit::Capabilities) -> Capabilities {
    Capabilities {
        range_reads: c.contains(wit::Capabilities::RANGE_READS),
        presign: c.contains(wit::Capabilities::PRESIGN),
        create_only: c.contains(wit::Capabilities::CREATE_ONLY),
        user_metadata: c.contains(wit::Capabilities::USER_METADATA),
        list_pagination: c.contains(wit::Capabilities::LIST_PAGINATION),
    }
}

/// A request context for a driver.
pub fn context_to_wit(c: &RequestContext) -> wit::RequestContext {
    wit::RequestContext {
        role: match c.role {
            Role::Web => wit::ServerRole::Web,
            Role::Services => wit::ServerRole::Services,
            Role::Testing => wit::ServerRole::Testing,
        },
        class: c.class.map(|c| c.as_str().to_string()),
        disk: c.disk.clone(),
        driver: c.driver.clone(),
        actor: c.actor.clone(),
        authenticated_as: c.authenticated_as.clone(),
        request_id: c.request_id.clone(),
        metadata: c.metadata.clone(),
    }
}

/// Write options for a driver, for the write tagged `owner`.
pub fn write_options_to_wit(o: &WriteOptions, owner: &str) -> wit::WriteOptions {
    wit::WriteOptions {
        content_type: o.content_type.clone(),
        metadata: o.metadata.clone(),
        create_only: o.create_only,
        owner: owner.to_string(),
    }
}

/// A page of a driver's temporary objects.
pub fn temp_page_from_wit(p: wit::TempPage) -> TempPage {
    TempPage {
        items: p
            .items
            .into_iter()
            .map(|t| TempObject { id: t.id, owner: t.owner, size: t.size, modified: t.modified })
            .collect(),
        next_cursor: p.next_cursor,
    }
}

/// A byte range for a driver.
pub fn range_to_wit(r: ByteRange) -> wit::ByteRange {
    wit::ByteRange { offset: r.offset, length: r.length }
}

/// A host error as the WIT error variant (for policy outcomes).
pub fn error_to_wit(e: &StorageError) -> wit::Error {
    match e {
        StorageError::NotFound(p) => wit::Error::NotFound(p.clone()),
        StorageError::AlreadyExists(p) => wit::Error::AlreadyExists(p.clone()),
        StorageError::Denied(r) => wit::Error::Denied(r.clone()),
        StorageError::InvalidPath(r) => wit::Error::InvalidPath(r.clone()),
        StorageError::InvalidRange(r) => wit::Error::InvalidRange(r.clone()),
        StorageError::Unsupported(op) => wit::Error::Unsupported(op.clone()),
        StorageError::Unavailable { reason, retryable } => {
            wit::Error::Unavailable(wit::Unavailable { reason: reason.clone(), retryable: *retryable })
        }
        StorageError::Io(m) => wit::Error::Io(m.clone()),
        other => wit::Error::Io(other.to_string()),
    }
}

fn operation_to_wit(op: Operation) -> wit::Operation {
    match op {
        Operation::Put => wit::Operation::Put,
        Operation::Get => wit::Operation::Get,
        Operation::Stat => wit::Operation::Stat,
        Operation::Exists => wit::Operation::Exists,
        Operation::List => wit::Operation::List,
        Operation::Delete => wit::Operation::Delete,
        Operation::Url => wit::Operation::Url,
    }
}

/// The operations in a policy's `operation-set`.
pub fn operation_set_from_wit(set: wit_policy::OperationSet) -> OperationSet {
    Operation::ALL.into_iter().filter(|op| set.contains(operation_set_bit(*op))).collect()
}

fn operation_set_bit(op: Operation) -> wit_policy::OperationSet {
    match op {
        Operation::Put => wit_policy::OperationSet::PUT,
        Operation::Get => wit_policy::OperationSet::GET,
        Operation::Stat => wit_policy::OperationSet::STAT,
        Operation::Exists => wit_policy::OperationSet::EXISTS,
        Operation::List => wit_policy::OperationSet::LIST,
        Operation::Delete => wit_policy::OperationSet::DELETE,
        Operation::Url => wit_policy::OperationSet::URL,
    }
}

/// An operation request for a policy.
pub fn request_to_wit(r: &OperationRequest) -> wit_policy::OperationRequest {
    wit_policy::OperationRequest {
        operation: operation_to_wit(r.operation),
        ctx: context_to_wit(&r.ctx),
        path: r.path.clone(),
        content_type: r.content_type.clone(),
        object_metadata: r.object_metadata.clone(),
        expires_in_secs: r.expires_in_secs,
    }
}

/// An operation outcome for a policy, at `phase`.
pub fn outcome_to_wit(o: &OperationOutcome, phase: Phase) -> wit_policy::OperationOutcome {
    wit_policy::OperationOutcome {
        request: request_to_wit(&o.request),
        phase: match phase {
            Phase::Before => wit_policy::Phase::Before,
            Phase::After => wit_policy::Phase::After,
        },
        size: o.size,
        sha256: o.sha256.clone(),
        duration_us: o.duration.as_micros().min(u128::from(u64::MAX)) as u64,
        error: o.error.as_ref().map(error_to_wit),
        items: o.items,
        url_id: o.url_id.clone(),
    }
}

/// A policy's tracking record for the ledger (before the host stamps it).
pub fn tracking_from_wit(r: wit_ledger::TrackingRecord) -> Record {
    Record {
        action: r.action,
        path: r.path,
        disk: r.disk,
        class: r.class,
        actor: r.actor,
        cohort: r.cohort,
        file_type: r.file_type,
        size: r.size,
        sha256: r.sha256,
        metadata: r.metadata,
        error: r.error,
        cleanup_required: r.cleanup_required,
        cleanup_within_secs: r.cleanup_within_secs,
        request_id: r.request_id,
        ..Record::default()
    }
}
