//! Suspended writes (`wit/resumable.wit`): a write's temp file stays in `.stowage-tmp/` between
//! the requests of an upload session, fsynced at each suspend, and its token names the file and
//! the bytes it held then: `lfs1 <file name> <size>`. Resuming truncates the file to that size
//! (bytes a crashed request wrote after the suspend are dropped) and goes on writing after it.
//!
//! A token is checked before it is used: the file it names must be a temp file of this write's
//! owner, in `.stowage-tmp/`, so no token reaches any other file.

use stowage_plugin_sdk::driver::stowage::storage::types::{Error, WriteOptions};
use stowage_plugin_sdk::path::ObjectPath;
use stowage_plugin_sdk::wasip2::filesystem::types::{DescriptorFlags, ErrorCode, OpenFlags};

use crate::error::fs_error;
use crate::fs::{NO_FOLLOW, remove, root};
use crate::paths::{TEMP_DIR, owner_tag};

/// What a token says.
pub struct Token {
    /// The temp file's name in `.stowage-tmp/`.
    pub name: String,
    /// Bytes it held at the suspend.
    pub size: u64,
}

impl Token {
    /// The token of a temp file (its path under the root) holding `size` bytes.
    pub fn of(temp_path: &str, size: u64) -> String {
        let name = temp_path.strip_prefix(TEMP_DIR).unwrap_or(temp_path).trim_start_matches('/');
        format!("lfs1 {name} {size}")
    }

    /// Reads a token; `invalid` says what is wrong with a token that is not one of ours.
    pub fn parse(token: &str) -> Result<Token, Error> {
        let invalid = |what: &str| Error::Io(format!("not a local-fs resume token: {what}"));
        let mut parts = token.split(' ');
        if parts.next() != Some("lfs1") {
            return Err(invalid("it does not start with `lfs1`"));
        }
        let name = parts.next().ok_or_else(|| invalid("no file name"))?;
        let size = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| invalid("no size"))?;
        if parts.next().is_some() {
            return Err(invalid("trailing words"));
        }
        // `<owner>.<16 hex>`: a temp file of an object (not a sidecar), nothing else.
        let (owner, random) = name.split_once('.').ok_or_else(|| invalid("a file name without an owner"))?;
        if owner_tag(owner) != owner || random.len() != 16 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("the file name is not a temp file's"));
        }
        Ok(Token { name: name.to_string(), size })
    }

    /// The owner tag in the file's name.
    pub fn owner(&self) -> &str {
        self.name.split_once('.').map_or("", |(owner, _)| owner)
    }

    /// The file's path under the root.
    pub fn path(&self) -> String {
        format!("{TEMP_DIR}/{}", self.name)
    }

    /// Opens the file of a write to `path` by `options.owner` for writing, cut back to the
    /// token's size.
    pub fn reopen(
        &self,
        path: &ObjectPath,
        options: &WriteOptions,
    ) -> Result<stowage_plugin_sdk::wasip2::filesystem::types::Descriptor, Error> {
        if self.owner() != owner_tag(&options.owner) || self.owner() == "none" {
            return Err(Error::Denied(format!(
                "the resume token of `{path}` belongs to another write (owner `{}`)",
                self.owner()
            )));
        }
        let file = root()?
            .open_at(NO_FOLLOW, &self.path(), OpenFlags::empty(), DescriptorFlags::WRITE | DescriptorFlags::READ)
            .map_err(|code| match code {
                ErrorCode::NoEntry => Error::NotFound(format!("the suspended write of `{path}`")),
                code => fs_error(code, path),
            })?;
        let held = file.stat().map_err(|code| fs_error(code, path))?.size;
        if held < self.size {
            return Err(Error::Io(format!(
                "the suspended write of `{path}` holds {held} bytes, fewer than the {} it held when suspended; its temp file was changed",
                self.size
            )));
        }
        file.set_size(self.size).map_err(|code| fs_error(code, path))?;
        Ok(file)
    }

    /// Removes the file.
    pub fn discard(&self) -> Result<(), Error> {
        let root = root()?;
        match root.stat_at(NO_FOLLOW, &self.path()) {
            Ok(_) => remove(root, &self.path()).map_err(|code| fs_error(code, &self.path())),
            Err(ErrorCode::NoEntry) => Err(Error::NotFound(format!("the suspended write `{}`", self.name))),
            Err(code) => Err(fs_error(code, &self.path())),
        }
    }
}
