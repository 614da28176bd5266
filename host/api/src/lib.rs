//! The wire protocol of a Stowage host's HTTP API (`stowage serve`), written once for both
//! ends: the server and every client of it, the remote driver among them (this crate builds
//! for wasm32-wasip2 too). Header names, the error kinds of `{"error": kind, "message": text}`
//! answers and the object-info JSON are used by both; the route prefixes by clients (the
//! server's router spells its patterns out, and a test keeps them equal to the OpenAPI
//! document).

use std::collections::BTreeMap;
use std::fmt;

/// Route prefixes (each followed by `/NAME/PATH`, percent-encoded per segment).
pub mod route {
    /// `/v1/objects/NAME/PATH`: PUT, GET, HEAD, DELETE of one object.
    pub const OBJECTS: &str = "/v1/objects";
    /// `/v1/uploads/NAME/PATH`: POST opens an upload session for the object.
    pub const UPLOADS: &str = "/v1/uploads";
    /// `/v1/upload-sessions/ID`: PATCH appends, HEAD tells the offset, DELETE discards;
    /// `/complete` commits.
    pub const UPLOAD_SESSIONS: &str = "/v1/upload-sessions";
    /// `/v1/list/NAME?prefix=&cursor=&limit=`: a page of a listing.
    pub const LIST: &str = "/v1/list";
}

/// Header names (lowercase, as HTTP/2 and `http::HeaderName` want them).
pub mod header {
    /// The request id, carried into logs and the ledger and returned in the answer.
    pub const REQUEST_ID: &str = "x-request-id";
    /// The person or service a request is for (recorded in the ledger).
    pub const ACTOR: &str = "x-stowage-actor";
    /// The cohort a request is for (request metadata `cohort`).
    pub const COHORT: &str = "x-stowage-cohort";
    /// Why the data is accessed (request metadata `purpose`, recorded in the ledger).
    pub const PURPOSE: &str = "x-stowage-purpose";
    /// User metadata: `x-stowage-meta-KEY: VALUE`.
    pub const META_PREFIX: &str = "x-stowage-meta-";
    /// The content's sha256 (lowercase hex): checked before commit on PUT, given on GET/HEAD.
    pub const SHA256: &str = "x-stowage-sha256";
    /// When the object was last written, in milliseconds since the Unix epoch (exact, unlike
    /// `Last-Modified`).
    pub const MODIFIED_MS: &str = "x-stowage-modified-ms";
    /// The fallback disk holding the object while its own disk is away (on a PUT's answer: the
    /// write landed there and is queued for sync; on GET/HEAD: it still waits there).
    pub const FALLBACK: &str = "x-stowage-fallback";
    /// A failure's kind, as the JSON body's `error` (a HEAD answer has no body).
    pub const ERROR_KIND: &str = "x-stowage-error";
    /// How many bytes an upload session holds.
    pub const UPLOAD_OFFSET: &str = "upload-offset";
}

/// What kind of failure an answer reports: the `error` of its JSON body and its
/// [`header::ERROR_KIND`]. The contract's own error names, plus the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such object (or route, or upload session).
    NotFound,
    /// A create-only write found an object there.
    AlreadyExists,
    /// A policy or the store refused.
    Denied,
    /// The object path breaks the path rules.
    InvalidPath,
    /// The `Range` lies outside the object.
    InvalidRange,
    /// The disk cannot do this.
    Unsupported,
    /// The backend cannot be reached now; trying again later may succeed.
    Unavailable,
    /// Any other failure of the backend or the host.
    Io,
    /// A plugin trapped or broke the contract.
    PluginFault,
    /// No storage class or disk by that name.
    UnknownName,
    /// The address is not `NAME:PATH`.
    BadAddress,
    /// The bytes do not have the sha256 the client sent.
    DigestMismatch,
    /// The ledger cannot record the operation, so it did not happen.
    AuditUnavailable,
    /// The object is larger than the disk takes.
    TooLarge,
    /// The disk's quota would be exceeded.
    QuotaExceeded,
    /// The disk is full.
    NoSpace,
    /// The client is over one of its limits.
    TooManyRequests,
    /// A request the storage layer never saw was malformed (a header, a query).
    BadRequest,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Denied,
        ErrorKind::InvalidPath,
        ErrorKind::InvalidRange,
        ErrorKind::Unsupported,
        ErrorKind::Unavailable,
        ErrorKind::Io,
        ErrorKind::PluginFault,
        ErrorKind::UnknownName,
        ErrorKind::BadAddress,
        ErrorKind::DigestMismatch,
        ErrorKind::AuditUnavailable,
        ErrorKind::TooLarge,
        ErrorKind::QuotaExceeded,
        ErrorKind::NoSpace,
        ErrorKind::TooManyRequests,
        ErrorKind::BadRequest,
    ];

    /// The kind's name on the wire (`not-found`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::AlreadyExists => "already-exists",
            ErrorKind::Denied => "denied",
            ErrorKind::InvalidPath => "invalid-path",
            ErrorKind::InvalidRange => "invalid-range",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Io => "io",
            ErrorKind::PluginFault => "plugin-fault",
            ErrorKind::UnknownName => "unknown-name",
            ErrorKind::BadAddress => "bad-address",
            ErrorKind::DigestMismatch => "digest-mismatch",
            ErrorKind::AuditUnavailable => "audit-unavailable",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::QuotaExceeded => "quota-exceeded",
            ErrorKind::NoSpace => "no-space",
            ErrorKind::TooManyRequests => "too-many-requests",
            ErrorKind::BadRequest => "bad-request",
        }
    }

    /// The kind a wire name stands for; `None` for a name this version does not know.
    pub fn parse(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure's JSON body: `{"error": kind, "message": text}`. The kind stays text so that a
/// kind a newer host adds still reads ([`ErrorKind::parse`] tells it apart).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// The kind's wire name.
    #[serde(default)]
    pub error: String,
    /// What went wrong, for people.
    #[serde(default)]
    pub message: String,
}

/// An object's info as JSON (a write's answer, a listing's items).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InfoJson {
    /// The object path.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256 (lowercase hex), when known.
    pub sha256: Option<String>,
    /// Its content type, when set.
    pub content_type: Option<String>,
    /// When it was last written, in milliseconds since the Unix epoch.
    pub modified_ms: Option<u64>,
    /// The backend's tag of this version.
    pub etag: Option<String>,
    /// User metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The fallback disk holding it while its own disk is away (left out: on its own disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name_and_names_are_unique() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(ErrorKind::parse("Not-Found"), None, "names are exact");
        assert_eq!(ErrorKind::parse("teapot"), None);
    }

    #[test]
    fn object_info_json_has_the_documented_field_names() {
        let info = InfoJson {
            path: "a/b.txt".into(),
            size: 3,
            sha256: None,
            content_type: Some("text/plain".into()),
            modified_ms: Some(1),
            etag: None,
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            fallback: None,
        };
        let text = serde_json::to_value(&info).unwrap();
        assert_eq!(
            text,
            serde_json::json!({"path": "a/b.txt", "size": 3, "sha256": null, "content_type": "text/plain",
                "modified_ms": 1, "etag": null, "metadata": {"k": "v"}})
        );
        let back: InfoJson = serde_json::from_value(text).unwrap();
        assert_eq!(back, info);
        // Metadata may be left out.
        let bare: InfoJson = serde_json::from_str(
            r#"{"path":"p","size":0,"sha256":null,"content_type":null,"modified_ms":null,"etag":null}"#,
        )
        .unwrap();
        assert!(bare.metadata.is_empty());
    }
}
