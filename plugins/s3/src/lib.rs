//! The S3 driver: objects in any S3-compatible store (AWS S3, SeaweedFS, rclone, MinIO, Ceph
//! RGW, Garage), through aws-sdk-s3 over wasi:http. The host lets it reach only the disk's
//! granted endpoint. Config keys: see `settings`. Design notes (the sha256 of multipart
//! objects, what differs between servers): README.md.
//!
//! - Writes: one PUT up to `part_size_mib`, a multipart upload beyond (memory stays at about
//!   one part); create-only through `If-None-Match: *`. The host's sha256 goes with the PUT,
//!   or into a companion object after a multipart upload completes (`object`).
//! - Reads: ranged GETs whose body stream goes straight to the host.
//! - `url`: a presigned GET.

mod attempts;
mod client;
mod compat;
mod error;
mod lister;
mod object;
mod reader;
mod resume;
mod settings;
mod tails;
mod temps;
mod writer;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use stowage_plugin_sdk::Store;
use stowage_plugin_sdk::driver::exports::stowage::storage::store::{Reader, Writer};
use stowage_plugin_sdk::driver::stowage::storage::types::{
    ByteRange, Capabilities, Error, ListPage, ObjectInfo, RequestContext, TempPage, WriteOptions,
};
use stowage_plugin_sdk::path::{ObjectPath, Prefix};

use crate::client::{run, s3};
use crate::error::{Op, from_sdk};

/// The longest a presigned URL may live (SigV4's limit: 7 days).
const MAX_URL_SECS: u64 = 7 * 24 * 3600;

/// The driver. Paths come checked (the SDK's export wrapper); this driver adds only its own
/// reserved prefix.
struct S3Driver;

/// An object path, not under the companions' reserved prefix.
fn check(path: &ObjectPath) -> Result<(), Error> {
    if object::reserved(path) {
        return Err(Error::InvalidPath(format!(
            "`{path}`: paths under `{}` and `{}` are reserved by the s3 driver (the sha256 of multipart objects, suspended writes)",
            object::COMPANIONS,
            object::TAILS
        )));
    }
    Ok(())
}

impl Store for S3Driver {
    type Writer = writer::S3Writer;
    type Reader = reader::S3Reader;

    fn get_capabilities() -> Capabilities {
        Capabilities::RANGE_READS
            | Capabilities::PRESIGN
            | Capabilities::CREATE_ONLY
            | Capabilities::USER_METADATA
            | Capabilities::LIST_PAGINATION
    }

    fn open_writer(ctx: RequestContext, path: ObjectPath, options: WriteOptions) -> Result<Writer, Error> {
        check(&path)?;
        Ok(Writer::new(writer::writer(ctx.disk, path, options)?))
    }

    fn open_reader(
        ctx: RequestContext,
        path: ObjectPath,
        range: Option<ByteRange>,
    ) -> Result<(Reader, ObjectInfo), Error> {
        check(&path)?;
        // One GET answers with the bytes and the info. S3 refuses ranges that are empty or
        // start at the end (416): those need the size from a HEAD, and read nothing.
        let (reader, info) = match range {
            Some(r) if r.length == Some(0) => (reader::S3Reader::empty(), object::head(&ctx.disk, &path)?),
            _ => match reader::open(&ctx.disk, &path, range) {
                Err(Error::InvalidRange(why)) => {
                    let info = object::head(&ctx.disk, &path)?;
                    match range {
                        Some(r) if r.offset == info.size => (reader::S3Reader::empty(), info),
                        _ => {
                            return Err(Error::InvalidRange(format!(
                                "{path}: {why}; the object has {} bytes",
                                info.size
                            )));
                        }
                    }
                }
                other => other?,
            },
        };
        if let Some(r) = range
            && r.offset > info.size
        {
            return Err(Error::InvalidRange(format!(
                "{path}: offset {} is past the end of a {}-byte object",
                r.offset, info.size
            )));
        }
        Ok((Reader::new(reader), object::resolve(&ctx.disk, info)?))
    }

    fn stat(ctx: RequestContext, path: ObjectPath) -> Result<ObjectInfo, Error> {
        check(&path)?;
        object::head(&ctx.disk, &path)
    }

    fn exists(ctx: RequestContext, path: ObjectPath) -> Result<bool, Error> {
        check(&path)?;
        stowage_plugin_sdk::found(object::head_raw(&ctx.disk, &path))
    }

    fn list(ctx: RequestContext, prefix: Prefix, cursor: Option<String>, limit: u32) -> Result<ListPage, Error> {
        lister::list(&ctx.disk, &prefix, cursor, limit)
    }

    fn delete(ctx: RequestContext, path: ObjectPath) -> Result<(), Error> {
        check(&path)?;
        // S3 deletes succeed for missing keys; the contract says not-found.
        let info = object::head_raw(&ctx.disk, &path)?;
        let s3 = s3()?;
        let op = Op { disk: &ctx.disk, path: &path, what: "delete" };
        let key = s3.settings.key(&path);
        run(s3.client.delete_object().bucket(&s3.settings.bucket).key(&key).send()).map_err(|e| from_sdk(&op, e))?;
        // Then a multipart object's companion (one left by a failure here is never believed
        // for another object: it names this one's nonce).
        if object::companion_nonce(info.sha256.as_deref()).is_some() {
            let companion = s3.settings.key(&object::companion_path(&path));
            run(s3.client.delete_object().bucket(&s3.settings.bucket).key(companion).send())
                .map_err(|e| from_sdk(&op, e))?;
        }
        Ok(())
    }

    fn url(ctx: RequestContext, path: ObjectPath, expires_in_secs: u64) -> Result<String, Error> {
        check(&path)?;
        if expires_in_secs == 0 || expires_in_secs > MAX_URL_SECS {
            return Err(Error::Unsupported(format!(
                "URLs may live 1 to {MAX_URL_SECS} seconds, not {expires_in_secs}"
            )));
        }
        object::head_raw(&ctx.disk, &path)?;
        let s3 = s3()?;
        let config = PresigningConfig::expires_in(Duration::from_secs(expires_in_secs))
            .map_err(|e| Error::Io(format!("cannot sign a URL: {e}")))?;
        let signed =
            run(s3.client.get_object().bucket(&s3.settings.bucket).key(s3.settings.key(&path)).presigned(config))
                .map_err(|e| Error::Io(format!("disk `{}`: cannot sign a URL for `{path}`: {e}", ctx.disk)))?;
        Ok(signed.uri().to_string())
    }

    fn list_temps(ctx: RequestContext, cursor: Option<String>, limit: u32) -> Result<TempPage, Error> {
        temps::list(&ctx.disk, cursor, limit)
    }

    fn remove_temp(ctx: RequestContext, id: String) -> Result<(), Error> {
        temps::remove(&ctx.disk, &id)
    }

    fn suspend(writer: &writer::S3Writer) -> Result<String, Error> {
        writer.suspend()
    }

    fn resume(ctx: RequestContext, path: ObjectPath, options: WriteOptions, token: String) -> Result<Writer, Error> {
        check(&path)?;
        Ok(Writer::new(resume::resume(ctx.disk, path, options, &token)?))
    }

    fn discard(ctx: RequestContext, token: String) -> Result<(), Error> {
        resume::discard(&ctx.disk, &token)
    }
}

stowage_plugin_sdk::export_store!(S3Driver);
