//! The checks, one file per area of the contract.

mod delete;
mod list;
mod paths;
mod read;
mod resume;
mod write;

use crate::{Check, Needs};

macro_rules! check {
    ($name:literal, $needs:ident, $f:path) => {
        Check { name: $name, needs: Needs::$needs, run: |h| Box::pin($f(h)) }
    };
}

pub(crate) fn all() -> Vec<Check> {
    vec![
        check!("write/put-get-roundtrip", Basics, write::roundtrip),
        check!("write/empty-object", Basics, write::empty_object),
        check!("write/overwrite", Basics, write::overwrite),
        check!("write/invisible-until-finish", Basics, write::invisible_until_finish),
        check!("write/abort-leaves-nothing", Basics, write::abort_leaves_nothing),
        check!("write/drop-leaves-nothing", Basics, write::drop_leaves_nothing),
        check!("write/crashed-write-is-findable", Basics, write::crashed_write_is_findable),
        check!("write/create-only", CreateOnly, write::create_only),
        check!("write/metadata", UserMetadata, write::metadata),
        check!("write/streaming-100mib", Basics, write::streaming_100mib),
        check!("read/not-found", Basics, read::not_found),
        check!("read/stat", Basics, read::stat),
        check!("read/stat-sha256", UserMetadata, read::stat_sha256),
        check!("read/exists", Basics, read::exists),
        check!("read/range", RangeReads, read::range),
        check!("read/url-or-unsupported", Basics, read::url_or_unsupported),
        check!("list/prefix", Basics, list::prefix),
        check!("list/order", Basics, list::order),
        check!("list/pagination", ListPagination, list::pagination),
        check!("delete/removes", Basics, delete::removes),
        check!("delete/not-found", Basics, delete::not_found),
        check!("paths/invalid-refused", Basics, paths::invalid_refused),
        check!("paths/nested-and-unicode", Basics, paths::nested_and_unicode),
        check!("resume/continues-elsewhere", Resumable, resume::continues_elsewhere),
        check!("resume/older-token-drops-later-bytes", Resumable, resume::older_token_drops_later_bytes),
        check!("resume/token-is-for-its-write", Resumable, resume::token_is_for_its_write),
        check!("resume/discard-removes", Resumable, resume::discard_removes),
    ]
}
