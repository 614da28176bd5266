//! The one place where generated WIT types and the host's own types are converted.

use crate::bindings::wit;
use crate::error::StorageError;
use crate::types::{
    ByteRange, Capabilities, ListPage, ObjectInfo, RequestContext, Role, WriteOptions,
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
        wit::Error::Unavailable(u) => StorageError::Unavailable {
            reason: u.reason,
            retryable: u.retryable,
        },
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
    }
}

/// A listing page from a driver.
pub fn page_from_wit(p: wit::ListPage) -> ListPage {
    ListPage {
        items: p.items.into_iter().map(info_from_wit).collect(),
        next_cursor: p.next_cursor,
    }
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
        actor: c.actor.clone(),
        request_id: c.request_id.clone(),
        metadata: c.metadata.clone(),
    }
}

/// Write options for a driver.
pub fn write_options_to_wit(o: &WriteOptions) -> wit::WriteOptions {
    wit::WriteOptions {
        content_type: o.content_type.clone(),
        metadata: o.metadata.clone(),
        create_only: o.create_only,
    }
}

/// A byte range for a driver.
pub fn range_to_wit(r: ByteRange) -> wit::ByteRange {
    wit::ByteRange {
        offset: r.offset,
        length: r.length,
    }
}
