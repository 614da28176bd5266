//! The `store` interface (and `resumable`, whose methods default to `unsupported`) with
//! checked paths: a driver implements [`Store`], whose methods
//! take an [`ObjectPath`] (and `list` a [`Prefix`]), and exports it with
//! [`export_store!`](crate::export_store). The export wrapper, [`StoreExport`], implements the
//! generated `Guest` trait: it parses each path the host sent once, answers a bad one with
//! `invalid-path` (the rules' own message) before the driver runs, and passes everything else
//! through unchanged.
//!
//! ```text
//! use stowage_plugin_sdk::Store;
//! struct MyDriver;
//! impl Store for MyDriver { /* fn stat(ctx: RequestContext, path: ObjectPath) ... */ }
//! stowage_plugin_sdk::export_store!(MyDriver);
//! ```

use std::marker::PhantomData;

use crate::driver::exports::stowage::storage::resumable;
use crate::driver::exports::stowage::storage::store::{Guest, GuestReader, GuestWriter, Reader, Writer, WriterBorrow};
use crate::driver::stowage::storage::types::{
    ByteRange, Capabilities, Error, ListPage, ObjectInfo, RequestContext, TempPage, WriteOptions,
};
use crate::path::{ObjectPath, Prefix};

/// The storage contract (`wit/store.wit`) as a driver implements it: every object path has
/// passed the path rules, every listing prefix the prefix rules.
pub trait Store {
    /// The driver's `writer` resource.
    type Writer: GuestWriter;
    /// The driver's `reader` resource.
    type Reader: GuestReader;

    /// What this driver supports beyond the basics.
    fn get_capabilities() -> Capabilities;

    /// Starts writing an object at `path`.
    fn open_writer(ctx: RequestContext, path: ObjectPath, options: WriteOptions) -> Result<Writer, Error>;

    /// Starts reading the object at `path` (all of it, or `range`), with its info.
    fn open_reader(
        ctx: RequestContext,
        path: ObjectPath,
        range: Option<ByteRange>,
    ) -> Result<(Reader, ObjectInfo), Error>;

    /// Everything known about the object at `path`.
    fn stat(ctx: RequestContext, path: ObjectPath) -> Result<ObjectInfo, Error>;

    /// Whether an object exists at `path`: by default, whether [`Store::stat`] finds it.
    fn exists(ctx: RequestContext, path: ObjectPath) -> Result<bool, Error> {
        crate::found(Self::stat(ctx, path))
    }

    /// Objects whose paths start with `prefix`, at most `limit`, after `cursor` if given.
    fn list(ctx: RequestContext, prefix: Prefix, cursor: Option<String>, limit: u32) -> Result<ListPage, Error>;

    /// Removes the object at `path`; `not-found` if there is none.
    fn delete(ctx: RequestContext, path: ObjectPath) -> Result<(), Error>;

    /// A URL that serves the object until `expires_in_secs` from now, or `unsupported`.
    fn url(ctx: RequestContext, path: ObjectPath, expires_in_secs: u64) -> Result<String, Error>;

    /// The temporary objects unfinished writes left (at most `limit`, after `cursor`).
    fn list_temps(ctx: RequestContext, cursor: Option<String>, limit: u32) -> Result<TempPage, Error>;

    /// Removes one temporary object; `not-found` if it is gone already.
    fn remove_temp(ctx: RequestContext, id: String) -> Result<(), Error>;

    /// Makes what `writer` took durable and returns the token that resumes it
    /// (`wit/resumable.wit`). By default `unsupported`: the host keeps such a driver's upload
    /// sessions in its own memory.
    fn suspend(writer: &Self::Writer) -> Result<String, Error> {
        let _ = writer;
        Err(Error::Unsupported("suspend".into()))
    }

    /// A writer continuing the write `token` names, as it stood when the token was given.
    fn resume(ctx: RequestContext, path: ObjectPath, options: WriteOptions, token: String) -> Result<Writer, Error> {
        let _ = (ctx, path, options, token);
        Err(Error::Unsupported("resume".into()))
    }

    /// Discards the suspended write `token` names.
    fn discard(ctx: RequestContext, token: String) -> Result<(), Error> {
        let _ = (ctx, token);
        Err(Error::Unsupported("discard".into()))
    }
}

/// The generated `Guest` over a [`Store`]: what [`export_store!`](crate::export_store)
/// exports. It holds nothing; it only names the driver.
pub struct StoreExport<T>(PhantomData<fn() -> T>);

impl<T: Store> Guest for StoreExport<T> {
    type Writer = T::Writer;
    type Reader = T::Reader;

    fn get_capabilities() -> Capabilities {
        T::get_capabilities()
    }

    fn open_writer(ctx: RequestContext, path: String, options: WriteOptions) -> Result<Writer, Error> {
        T::open_writer(ctx, ObjectPath::try_from(path)?, options)
    }

    fn open_reader(ctx: RequestContext, path: String, range: Option<ByteRange>) -> Result<(Reader, ObjectInfo), Error> {
        T::open_reader(ctx, ObjectPath::try_from(path)?, range)
    }

    fn stat(ctx: RequestContext, path: String) -> Result<ObjectInfo, Error> {
        T::stat(ctx, ObjectPath::try_from(path)?)
    }

    fn exists(ctx: RequestContext, path: String) -> Result<bool, Error> {
        T::exists(ctx, ObjectPath::try_from(path)?)
    }

    fn list(ctx: RequestContext, prefix: String, cursor: Option<String>, limit: u32) -> Result<ListPage, Error> {
        T::list(ctx, Prefix::try_from(prefix)?, cursor, limit)
    }

    fn delete(ctx: RequestContext, path: String) -> Result<(), Error> {
        T::delete(ctx, ObjectPath::try_from(path)?)
    }

    fn url(ctx: RequestContext, path: String, expires_in_secs: u64) -> Result<String, Error> {
        T::url(ctx, ObjectPath::try_from(path)?, expires_in_secs)
    }

    fn list_temps(ctx: RequestContext, cursor: Option<String>, limit: u32) -> Result<TempPage, Error> {
        T::list_temps(ctx, cursor, limit)
    }

    fn remove_temp(ctx: RequestContext, id: String) -> Result<(), Error> {
        T::remove_temp(ctx, id)
    }
}

impl<T: Store> resumable::Guest for StoreExport<T> {
    fn suspend(w: WriterBorrow<'_>) -> Result<String, Error> {
        T::suspend(w.get::<T::Writer>())
    }

    fn resume(ctx: RequestContext, path: String, options: WriteOptions, token: String) -> Result<Writer, Error> {
        T::resume(ctx, ObjectPath::try_from(path)?, options, token)
    }

    fn discard(ctx: RequestContext, token: String) -> Result<(), Error> {
        T::discard(ctx, token)
    }
}

/// Exports a [`Store`] as the component's `store` interface, through [`StoreExport`].
///
/// wit-bindgen's own export macro takes a type name, not a generic type, so this names the
/// wrapper with an alias first: `export_store!(MyDriver)` is
/// `export_driver!(StoreExport<MyDriver> with_types_in stowage_plugin_sdk::driver)`.
#[macro_export]
macro_rules! export_store {
    ($driver:ty) => {
        const _: () = {
            type Export = $crate::StoreExport<$driver>;
    $crate::driver::export_driver!(Export with_types_in $crate::driver);
        };
    };
}
