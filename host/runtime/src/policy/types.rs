//! The pipeline's plain data: what policies are asked and told, what they answer, and what
//! their calls appended. No plugin code here: the WIT conversions and the host's ledger
//! import name these types without naming the pipeline.

use std::time::Duration;

use crate::error::StorageError;
use crate::ledger::Record;
use crate::types::{Capabilities, Metadata, Operation, OperationSet, RequestContext};

/// When a policy is told about an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before it takes effect (put, delete, get only): records now are write-ahead records.
    Before,
    /// After it, successful or not.
    After,
}

/// An operation about to run, as policies see it.
#[derive(Debug, Clone)]
pub struct OperationRequest {
    /// What.
    pub operation: Operation,
    /// Who, through which class and disk.
    pub ctx: RequestContext,
    /// The object path (or listing prefix).
    pub path: String,
    /// For writes: the content type to store.
    pub content_type: Option<String>,
    /// For writes: the user metadata to store.
    pub object_metadata: Metadata,
    /// For `url`: how long the URL is to stay valid.
    pub expires_in_secs: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct OperationOutcome {
    /// The request.
    pub request: OperationRequest,
    /// Bytes written or read.
    pub size: Option<u64>,
    /// sha256 measured by the host (writes) or known for the object (reads).
    pub sha256: Option<String>,
    /// How long it took.
    pub duration: Duration,
    /// The error, if it failed.
    pub error: Option<StorageError>,
    /// For `list`: items returned.
    pub items: Option<u32>,
    /// For `url`: the issued URL's id.
    pub url_id: Option<String>,
}

impl OperationOutcome {
    /// The outcome of `request`, with nothing measured yet.
    pub fn of(request: OperationRequest, started: std::time::Instant) -> OperationOutcome {
        OperationOutcome {
            request,
            size: None,
            sha256: None,
            duration: started.elapsed(),
            error: None,
            items: None,
            url_id: None,
        }
    }
}

/// What the host stamps on every record a policy appends during one call, and what the call
/// appended.
#[derive(Debug, Default)]
pub(crate) struct CallAudit {
    /// Host fields every record gets (policy name, credential, purpose, ...).
    pub(crate) stamp: Record,
    /// Indices appended.
    pub(crate) appended: Vec<u64>,
    /// The first append that failed.
    pub(crate) failed: Option<String>,
}

impl CallAudit {
    /// `record` as the policy wrote it, with the host's fields.
    pub(crate) fn stamped(&self, record: Record) -> Record {
        let s = &self.stamp;
        Record {
            key: s.key.clone(),
            purpose: s.purpose.clone(),
            policy: s.policy.clone(),
            items: s.items,
            expires_in_secs: s.expires_in_secs,
            url_id: s.url_id.clone(),
            intent: s.intent.clone(),
            ..record
        }
    }
}

/// What telling the policies produced.
#[derive(Debug, Default)]
pub struct Audit {
    /// Records appended (for a `before` call: the write-ahead records to settle).
    pub appended: Vec<u64>,
    /// Why a required policy could not record, if one could not.
    pub failure: Option<String>,
}

impl Audit {
    /// The failure as the operation's error.
    pub fn error(&self) -> Option<StorageError> {
        self.failure.clone().map(StorageError::AuditUnavailable)
    }
}

/// Which operations a policy checks and observes, and what it needs from the disks it guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interests {
    /// Operations the policy decides on; the others it allows without being asked.
    pub check: OperationSet,
    /// Operations whose outcome it is told.
    pub observe: OperationSet,
    /// Driver capabilities every disk must declare for this policy to work.
    pub needs: Capabilities,
}

impl Interests {
    /// Asked about everything, needing nothing: what the host assumes when a policy cannot say.
    pub const ALL: Interests =
        Interests { check: OperationSet::ALL, observe: OperationSet::ALL, needs: Capabilities::NONE };
}

/// A policy's answer to `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The operation may run.
    Allow,
    /// Refused, with the policy's reason.
    Deny(String),
}
