//! `local-fs`: a Stowage storage driver that keeps objects as files in the one directory the
//! host grants it (preopened as `/`).
//!
//! ```text
//! object   scratch/audit_123/data.csv   ->  <disk root>/scratch/audit_123/data.csv
//! metadata                                  <disk root>/scratch/audit_123/.data.csv.stowage-meta
//! writing                                   <disk root>/.stowage-tmp/<owner>.<16 hex>
//! ```
//!
//! Writes go to a temp file that is flushed and renamed into place, so a crash never leaves a
//! partial object visible. See `README.md` for the capabilities and the on-disk layout.

mod error;
mod fs;
mod lister;
mod meta;
mod object;
mod paths;
mod reader;
mod resume;
mod temps;
mod writer;

use stowage_plugin_sdk::Store;
use stowage_plugin_sdk::driver::exports::stowage::storage::store::{Reader, Writer};
use stowage_plugin_sdk::driver::stowage::storage::types::{
    ByteRange, Capabilities, Error, ListPage, ObjectInfo, RequestContext, TempPage, WriteOptions,
};
use stowage_plugin_sdk::path::{ObjectPath, Prefix};

use crate::reader::FsReader;
use crate::writer::FsWriter;

/// The driver: every call is served by one module. Paths come checked against the shared
/// rules (the SDK's export wrapper); local-fs adds its own (`paths::check_own_rules`).
struct LocalFs;

impl Store for LocalFs {
    type Writer = FsWriter;
    type Reader = FsReader;

    fn get_capabilities() -> Capabilities {
        Capabilities::RANGE_READS
            | Capabilities::CREATE_ONLY
            | Capabilities::USER_METADATA
            | Capabilities::LIST_PAGINATION
    }

    fn open_writer(_ctx: RequestContext, path: ObjectPath, options: WriteOptions) -> Result<Writer, Error> {
        FsWriter::open(path, options).map(Writer::new)
    }

    fn open_reader(
        _ctx: RequestContext,
        path: ObjectPath,
        range: Option<ByteRange>,
    ) -> Result<(Reader, ObjectInfo), Error> {
        let (reader, info) = FsReader::open(path, range)?;
        Ok((Reader::new(reader), info))
    }

    fn stat(_ctx: RequestContext, path: ObjectPath) -> Result<ObjectInfo, Error> {
        object::stat(&path)
    }

    fn exists(_ctx: RequestContext, path: ObjectPath) -> Result<bool, Error> {
        object::exists(&path)
    }

    fn list(_ctx: RequestContext, prefix: Prefix, cursor: Option<String>, limit: u32) -> Result<ListPage, Error> {
        lister::list(prefix, cursor, limit)
    }

    fn delete(_ctx: RequestContext, path: ObjectPath) -> Result<(), Error> {
        object::delete(&path)
    }

    fn url(_ctx: RequestContext, path: ObjectPath, _expires_in_secs: u64) -> Result<String, Error> {
        paths::check_own_rules(&path)?;
        Err(Error::Unsupported("url: local-fs has no signed URLs; the host signs them".to_string()))
    }

    fn list_temps(_ctx: RequestContext, cursor: Option<String>, limit: u32) -> Result<TempPage, Error> {
        temps::list(cursor, limit)
    }

    fn suspend(writer: &FsWriter) -> Result<String, Error> {
        writer.suspend()
    }

    fn resume(_ctx: RequestContext, path: ObjectPath, options: WriteOptions, token: String) -> Result<Writer, Error> {
        FsWriter::resume(path, options, &token).map(Writer::new)
    }

    fn discard(_ctx: RequestContext, token: String) -> Result<(), Error> {
        resume::Token::parse(&token)?.discard()
    }

    fn remove_temp(_ctx: RequestContext, id: String) -> Result<(), Error> {
        temps::remove(&id)
    }
}

stowage_plugin_sdk::export_store!(LocalFs);
