//! Listing a prefix, a page at a time, in path order.

use stowage_plugin_sdk::driver::stowage::storage::types::{Error, ListPage, ObjectInfo};
use stowage_plugin_sdk::path::{Prefix, validate};

use crate::client::{run, s3};
use crate::error::{Op, from_sdk};
use crate::object;

/// A page of the objects under `prefix`, from `cursor`.
pub fn list(disk: &str, prefix: &Prefix, cursor: Option<String>, limit: u32) -> Result<ListPage, Error> {
    let s3 = s3()?;
    let op = Op { disk, path: prefix, what: "list" };
    let page = run(s3
        .client
        .list_objects_v2()
        .bucket(&s3.settings.bucket)
        .prefix(s3.settings.key(prefix))
        .set_continuation_token(cursor)
        .max_keys(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
        .send())
    .map_err(|e| from_sdk(&op, e))?;
    let mut items: Vec<ObjectInfo> = page
        .contents()
        .iter()
        .filter_map(|o| {
            let path = s3.settings.path(o.key()?)?;
            // Keys written outside Stowage may not be valid object paths: skip them, and the
            // companions holding multipart objects' sha256.
            validate(path).ok()?;
            if object::reserved(path) {
                return None;
            }
            Some(object::list_item(path, o))
        })
        .collect();
    // S3 lists in byte order, but not every server does (SeaweedFS orders by path
    // component: `a/b/c` before `a/b.txt`). A page at least is put in order; across pages
    // the server's order stands.
    items.sort_by(|a, b| a.path.cmp(&b.path));
    let next_cursor = if page.is_truncated == Some(true) { page.next_continuation_token } else { None };
    Ok(ListPage { items, next_cursor })
}
