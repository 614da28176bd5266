//! The remote driver: a disk whose objects live on a *services* host, reached through that
//! host's HTTP API (`stowage serve`) over wasi:http. A *web* host maps its storage classes to
//! remote disks and so never keeps PHI on its own disks. The host lets the driver reach only
//! the disk's granted endpoint and adds the API key on the way out; config keys: see
//! `settings`.
//!
//! - Writes: streamed in segments over an upload session, resumed after a dropped connection
//!   (`writer`); small objects are one PUT. The services host checks the sha256 the host
//!   measured before anything becomes visible.
//! - Reads: a GET whose body stream the host reads directly (`reader`).
//! - Everything else: one request each, retried with backoff while the services host is
//!   unreachable or busy.

mod api;
mod error;
mod http;
mod lister;
mod reader;
mod settings;
mod writer;

use stowage_plugin_sdk::Store;
use stowage_plugin_sdk::driver::exports::stowage::storage::store::{Reader, Writer};
use stowage_plugin_sdk::driver::stowage::storage::types::{
    ByteRange, Capabilities, Error, ListPage, ObjectInfo, RequestContext, TempPage, WriteOptions,
};
use stowage_plugin_sdk::path::{ObjectPath, Prefix};
use stowage_plugin_sdk::wasip2::http::types::Method;

use crate::api::Api;
use crate::error::Op;

/// The driver. Paths come checked (the SDK's export wrapper); `exists` is the SDK's, over
/// `stat`.
struct RemoteDriver;

impl Store for RemoteDriver {
    type Writer = writer::RemoteWriter;
    type Reader = reader::RemoteReader;

    fn get_capabilities() -> Capabilities {
        // Signed URLs are the services host's to make; the web host serves its own.
        Capabilities::RANGE_READS
            | Capabilities::CREATE_ONLY
            | Capabilities::USER_METADATA
            | Capabilities::LIST_PAGINATION
    }

    fn open_writer(ctx: RequestContext, path: ObjectPath, options: WriteOptions) -> Result<Writer, Error> {
        Ok(Writer::new(writer::writer(Api::new(&ctx)?, path, options)?))
    }

    fn open_reader(
        ctx: RequestContext,
        path: ObjectPath,
        range: Option<ByteRange>,
    ) -> Result<(Reader, ObjectInfo), Error> {
        let api = Api::new(&ctx)?;
        // HTTP cannot ask for zero bytes, and answers 416 for a range starting at the end:
        // both read nothing, given the object's info.
        let opened = match range {
            Some(r) if r.length == Some(0) => None,
            _ => reader::open(&api, &path, range)?,
        };
        let (reader, info) = match opened {
            Some(opened) => opened,
            None => {
                let info = reader::head(&api, &path)?;
                match range {
                    Some(r) if r.offset <= info.size => (reader::RemoteReader::empty(&path), info),
                    Some(r) => {
                        return Err(Error::InvalidRange(format!(
                            "{path}: offset {} is past its end ({} bytes)",
                            r.offset, info.size
                        )));
                    }
                    None => return Err(Error::Io(format!("the services host refused to read `{path}` whole"))),
                }
            }
        };
        Ok((Reader::new(reader), info))
    }

    fn stat(ctx: RequestContext, path: ObjectPath) -> Result<ObjectInfo, Error> {
        reader::head(&Api::new(&ctx)?, &path)
    }

    fn list(ctx: RequestContext, prefix: Prefix, cursor: Option<String>, limit: u32) -> Result<ListPage, Error> {
        lister::list(&Api::new(&ctx)?, &prefix, cursor, limit)
    }

    fn delete(ctx: RequestContext, path: ObjectPath) -> Result<(), Error> {
        let api = Api::new(&ctx)?;
        let op = Op { what: "delete", path: &path };
        let mut tries = 0;
        let deleted = api.retrying(|| {
            tries += 1;
            api.call_once(op, Method::Delete, &api.object(&path), &[], &[], &[204])
        });
        match deleted {
            Ok(_) => Ok(()),
            // An earlier attempt got through but its answer was lost.
            Err(Error::NotFound(_)) if tries > 1 => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn url(_ctx: RequestContext, _path: ObjectPath, _expires_in_secs: u64) -> Result<String, Error> {
        Err(Error::Unsupported(
            "url: a remote disk's objects are served by signed URLs of the host itself (`stowage url`)".into(),
        ))
    }

    fn list_temps(_ctx: RequestContext, _cursor: Option<String>, _limit: u32) -> Result<TempPage, Error> {
        // Nothing is kept here: an unfinished upload lives on the services host, which sweeps
        // its own.
        Ok(TempPage { items: Vec::new(), next_cursor: None })
    }

    fn remove_temp(_ctx: RequestContext, id: String) -> Result<(), Error> {
        Err(Error::NotFound(id))
    }
}

stowage_plugin_sdk::export_store!(RemoteDriver);
