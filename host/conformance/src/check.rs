//! What one behaviour check is, and the optional capability it needs.

use std::future::Future;
use std::pin::Pin;

use stowage_runtime::Capabilities;

use crate::harness::Harness;

/// A check's future.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

/// An optional capability a check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing beyond the basics.
    Basics,
    /// Byte ranges on reads.
    RangeReads,
    /// Atomic create-only writes.
    CreateOnly,
    /// User metadata and content type.
    UserMetadata,
    /// Paged listings.
    ListPagination,
    /// Writes that can be suspended and resumed (`resumable`, contract 0.3.1): probed, not
    /// declared.
    Resumable,
}

impl Needs {
    /// The capability's WIT name.
    pub(crate) fn wit_name(self) -> &'static str {
        match self {
            Needs::Basics => "nothing",
            Needs::RangeReads => "range-reads",
            Needs::CreateOnly => "create-only",
            Needs::UserMetadata => "user-metadata",
            Needs::ListPagination => "list-pagination",
            Needs::Resumable => "resumable",
        }
    }

    pub(crate) fn met_by(self, caps: &Capabilities) -> bool {
        match self {
            Needs::Basics => true,
            Needs::RangeReads => caps.range_reads,
            Needs::CreateOnly => caps.create_only,
            Needs::UserMetadata => caps.user_metadata,
            Needs::ListPagination => caps.list_pagination,
            // Probed in `run_one`.
            Needs::Resumable => true,
        }
    }
}

/// One behaviour check.
pub struct Check {
    /// Stable name, e.g. `write/overwrite`.
    pub name: &'static str,
    /// The capability it needs.
    pub needs: Needs,
    /// Runs it.
    pub run: for<'a> fn(&'a Harness) -> CheckFuture<'a>,
}
