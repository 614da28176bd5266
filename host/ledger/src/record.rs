//! What one ledger row holds: a tracking record (actor, cohort, action, path, file type,
//! size, sha256, metadata, error, as a policy wrote them) and the fields the host stamps on it (which key asked, for what purpose,
//! which policy wrote it, and for write-ahead records the effect about to happen).
//!
//! A row's body is this record as JSON. Fields added since the first version are left out
//! when empty, so bodies written before them still parse, and the hash chain covers the body
//! text exactly as it was written.

use serde::{Deserialize, Serialize};

/// User or request metadata: ordered key/value pairs.
pub type Metadata = Vec<(String, String)>;

/// One ledger record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// e.g. `file_created`, `work_copy_deleted`, `write_committed`, `ledger_sealed`.
    pub action: String,
    /// Object path (or listing prefix, or a driver's temp object id).
    pub path: String,
    /// Disk name.
    pub disk: String,
    /// Storage class, if addressed through one.
    pub class: Option<String>,
    /// Who the request was for, as the client claims it.
    pub actor: Option<String>,
    /// Cohort.
    pub cohort: Option<String>,
    /// File type.
    pub file_type: Option<String>,
    /// Bytes (for a listing: items returned).
    pub size: Option<u64>,
    /// sha256 measured by the host.
    pub sha256: Option<String>,
    /// User metadata.
    pub metadata: Metadata,
    /// Error message of a failure.
    pub error: Option<String>,
    /// A temporary copy that must be deleted.
    pub cleanup_required: bool,
    /// Seconds after the record's time by which it must be gone.
    pub cleanup_within_secs: Option<u64>,
    /// The request that caused it.
    pub request_id: String,

    /// The credential that authenticated the request: an API key's name, `signed-url:ID`, or
    /// `local:USER` for the command line. Stamped by the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why the data was accessed, when the request said (`--purpose`, `x-stowage-purpose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The policy that wrote the record; none for the host's own records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// For a listing: the items it returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// For a URL issued: seconds it stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    /// For a URL (issued or used): its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_id: Option<String>,
    /// A write-ahead record: the effect about to happen, made durable before it happens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    /// An outcome: the write-ahead records it settles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settles: Vec<u64>,
    /// The outcome was found after a crash by looking at the object, not seen as it happened.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconciled: bool,
    /// A seal: an operator accepted a break in the chain and a new segment starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Seal>,
    /// The host that appended it (its `[ledger] host` name): in a ledger several hosts share,
    /// who wrote what. Stamped by the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// What a write-ahead record is about to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The effect.
    pub op: Effect,
    /// The disk it happens on.
    pub disk: String,
    /// The object.
    pub path: String,
    /// For a write: its size, measured by the host before the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For a write: its sha256, measured by the host before the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The host operation that made it (see the runtime's owner tags): a later host settles
    /// an intent only once its owner is gone.
    pub owner: String,
}

/// An effect a write-ahead record announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// An object is committed at the path.
    Put,
    /// The object at the path is removed.
    Delete,
}

impl Effect {
    /// The host's outcome action for this effect.
    pub fn outcome_action(self, committed: bool) -> &'static str {
        match (self, committed) {
            (Effect::Put, true) => "write_committed",
            (Effect::Put, false) => "write_failed",
            (Effect::Delete, true) => "delete_committed",
            (Effect::Delete, false) => "delete_failed",
        }
    }
}

/// What a seal record says about the break it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The first index that did not verify.
    pub broken_at: u64,
    /// What was wrong there.
    pub problem: String,
    /// The operator's reason.
    pub reason: String,
    /// The last record that verified, if any, and its hash.
    pub last_good: Option<(u64, String)>,
}

/// A stored record with its place in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 0-based index.
    pub index: u64,
    /// Milliseconds since the Unix epoch when it was appended.
    pub at_ms: u64,
    /// The record.
    pub record: Record,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_written_before_the_host_fields_still_parses_and_new_fields_stay_out_when_empty() {
        let old = r#"{"action":"file_created","path":"a","disk":"local","class":null,"actor":"alice","cohort":null,"file_type":null,"size":3,"sha256":null,"metadata":[],"error":null,"cleanup_required":false,"cleanup_within_secs":null,"request_id":"r"}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert_eq!((r.action.as_str(), r.size, r.key.as_deref()), ("file_created", Some(3), None));
        // Re-encoded without host fields, it is the same text: old chains keep verifying.
        assert_eq!(serde_json::to_string(&r).unwrap(), old);
        let stamped = Record { key: Some("web-1".into()), settles: vec![4], ..r };
        let text = serde_json::to_string(&stamped).unwrap();
        assert!(text.ends_with(r#""key":"web-1","settles":[4]}"#), "{text}");
    }
}
