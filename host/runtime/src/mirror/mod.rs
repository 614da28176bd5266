//! Mirrored disks: `[disks.archive] mirror = ["nas-a", "nas-b"]`. A mirror is a [`Disk`] whose
//! calls go to other disks (its *members*, each served by a driver), so everything above the
//! disk (policies, uploads, fallbacks, fsck, the conformance suite) uses it unchanged.
//!
//! - **Writes** go to every member at once, measured once by the host (size, sha256, and the
//!   BLAKE3 digest of each 1 MiB block), and succeed once `write_quorum` members committed them.
//!   Every copy carries the write's *version* (`stowage-mirror-version`: the host's clock in
//!   ms, then the request id), so a member that missed a write is seen to be behind. A member
//!   that missed it is *marked* (below) for the repairer.
//! - **Block digests** of an object over one block are kept beside it on each member, at
//!   `stowage-blocks/<path>` (`blocks.rs`); one of one block or less is its own sha256.
//! - **Reads** ask every member for the object, take the newest version, and stream it from the
//!   first member that has it, checking each block against its digest before a byte of it goes
//!   out. A block that does not match, or a member that fails, and the read goes on from the
//!   next member at that block, without the client noticing; the bad copy is marked.
//! - **Marks** are empty objects at `stowage-mirror/<member>/<op>/<path>/@<version>` on the
//!   other members, saying the member needs `put` (a copy of the newest version) or `delete`,
//!   and which version asked: one file per version, so no mark ever replaces another.
//!   The repairer (`repair.rs`, in `serve` and `stowage sync`) works through them: it copies
//!   from a good member, verified, records `mirror_repaired`, and removes the marks.
//! - **Deletes** go to every member and succeed on the quorum; a member that missed one is
//!   marked `delete`, and a read that finds it still holding the object sees the mark.
//!
//! `stowage-mirror/` and `stowage-blocks/` are the mirror's own: not listed, and refused as
//! paths through the mirror's address.

mod blocks;
mod check;
mod core;
mod disk;
mod reader;
mod repair;
mod writer;

use std::sync::Arc;

pub(crate) use core::reserved;
pub use core::{Mirror, VERSION};
pub use reader::MirrorReader;
pub use repair::RepairReport;
pub use writer::MirrorWriter;

use crate::driver::Disk;
use crate::error::StorageError;

/// Disk `name`, mirrored on `members` (disks served by drivers, in read order), a write
/// succeeding once `write_quorum` of them hold it.
pub fn mirrored(name: &str, members: Vec<Disk>, write_quorum: usize) -> Result<Disk, StorageError> {
    Ok(Disk::composite(Arc::new(Mirror::new(name, members, write_quorum)?), "mirror"))
}

/// The mirror `disk` is, if it is one.
pub(crate) fn of(disk: &Disk) -> Option<Arc<Mirror>> {
    disk.as_composite()?.clone().into_any().downcast::<Mirror>().ok()
}
