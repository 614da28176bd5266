//! The host's own storage types. Generated WIT types never leave `bindings`/`convert`: the rest
//! of the host, the CLI and the conformance suite speak these.

use std::fmt;

/// User metadata: ordered key/value pairs.
pub type Metadata = Vec<(String, String)>;

/// What a driver knows about a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectInfo {
    /// Path relative to the disk's root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the content, when known.
    pub sha256: Option<String>,
    /// MIME type given at write time.
    pub content_type: Option<String>,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified: Option<u64>,
    /// Opaque version tag.
    pub etag: Option<String>,
    /// User metadata given at write time.
    pub metadata: Metadata,
    /// The fallback disk holding the object while it waits to be synced to its own disk
    /// (none: it is on its own disk). Set by the host, never by a driver.
    pub fallback: Option<String>,
}

pub use stowage_config::{Role, StorageClass};

/// Who asks for an operation and why; passed to drivers and policies.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Role of the serving host.
    pub role: Role,
    /// The class the request was addressed to, if any.
    pub class: Option<StorageClass>,
    /// The disk serving the request.
    pub disk: String,
    /// The plugin serving that disk (bundled name or file stem).
    pub driver: String,
    /// The person or service asking (as the client claims it).
    pub actor: Option<String>,
    /// The credential that authenticated the request (an API key's name, `signed-url:ID`,
    /// `local:USER`).
    pub authenticated_as: Option<String>,
    /// Unique id of the request.
    pub request_id: String,
    /// Request metadata (e.g. cohort, purpose).
    pub metadata: Metadata,
}

/// A temporary object a driver keeps for an unfinished write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempObject {
    /// What `remove-temp` takes.
    pub id: String,
    /// The write's owner tag, if the driver kept it.
    pub owner: Option<String>,
    /// Bytes, when known.
    pub size: Option<u64>,
    /// Last written, ms since the Unix epoch.
    pub modified: Option<u64>,
}

/// A page of temporary objects.
#[derive(Debug, Clone, Default)]
pub struct TempPage {
    /// The objects.
    pub items: Vec<TempObject>,
    /// Where the next page starts.
    pub next_cursor: Option<String>,
}

/// How to write an object.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// MIME type to store.
    pub content_type: Option<String>,
    /// User metadata to store.
    pub metadata: Metadata,
    /// Refuse to replace an existing object.
    pub create_only: bool,
}

/// A byte range; `length: None` reads to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub offset: u64,
    /// Number of bytes, or to the end.
    pub length: Option<u64>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects in ascending path order.
    pub items: Vec<ObjectInfo>,
    /// Cursor for the next page.
    pub next_cursor: Option<String>,
}

/// Optional behaviours a driver declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Byte ranges on reads.
    pub range_reads: bool,
    /// Signed URLs.
    pub presign: bool,
    /// Atomic create-only writes.
    pub create_only: bool,
    /// User metadata and content type kept.
    pub user_metadata: bool,
    /// `list` honours limits and cursors.
    pub list_pagination: bool,
}

impl Capabilities {
    /// None declared.
    pub const NONE: Capabilities = Capabilities {
        range_reads: false,
        presign: false,
        create_only: false,
        user_metadata: false,
        list_pagination: false,
    };

    /// The WIT names of those declared, in WIT order.
    pub fn names(&self) -> Vec<&'static str> {
        self.named().into_iter().filter(|(_, on)| *on).map(|(n, _)| n).collect()
    }

    /// Each capability with its WIT name.
    pub fn named(&self) -> [(&'static str, bool); 5] {
        [
            ("range-reads", self.range_reads),
            ("presign", self.presign),
            ("create-only", self.create_only),
            ("user-metadata", self.user_metadata),
            ("list-pagination", self.list_pagination),
        ]
    }

    /// The WIT names of the capabilities `needs` has and `self` lacks.
    pub fn lacking(&self, needs: &Capabilities) -> Vec<&'static str> {
        self.named()
            .into_iter()
            .zip(needs.named())
            .filter(|((_, have), (_, need))| *need && !*have)
            .map(|((name, _), _)| name)
            .collect()
    }
}

impl std::fmt::Display for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.names();
        if names.is_empty() { f.write_str("none") } else { f.write_str(&names.join(", ")) }
    }
}

/// The operations a host performs on a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Write an object.
    Put,
    /// Read an object.
    Get,
    /// Read an object's info.
    Stat,
    /// Ask whether an object exists.
    Exists,
    /// List objects.
    List,
    /// Remove an object.
    Delete,
    /// Make a URL.
    Url,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Put => "put",
            Operation::Get => "get",
            Operation::Stat => "stat",
            Operation::Exists => "exists",
            Operation::List => "list",
            Operation::Delete => "delete",
            Operation::Url => "url",
        })
    }
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 7] = [
        Operation::Put,
        Operation::Get,
        Operation::Stat,
        Operation::Exists,
        Operation::List,
        Operation::Delete,
        Operation::Url,
    ];
}

/// A set of operations (e.g. those a policy checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperationSet(u8);

impl OperationSet {
    /// No operation.
    pub const NONE: OperationSet = OperationSet(0);
    /// Every operation.
    pub const ALL: OperationSet = OperationSet((1 << Operation::ALL.len()) - 1);

    fn bit(op: Operation) -> u8 {
        1 << op as u8
    }

    /// This set plus `op`.
    #[must_use]
    pub fn with(self, op: Operation) -> OperationSet {
        OperationSet(self.0 | Self::bit(op))
    }

    /// Whether `op` is in the set.
    pub fn contains(self, op: Operation) -> bool {
        self.0 & Self::bit(op) != 0
    }

    /// Whether the set has no operation.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Operation> for OperationSet {
    fn from_iter<I: IntoIterator<Item = Operation>>(ops: I) -> Self {
        ops.into_iter().fold(OperationSet::NONE, OperationSet::with)
    }
}
