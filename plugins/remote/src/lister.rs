//! Listing a prefix on the services host, a page at a time.

use stowage_plugin_sdk::driver::stowage::storage::types::{Error, ListPage};
use stowage_plugin_sdk::wasip2::http::types::Method;

use crate::api::{Api, InfoJson, json};
use crate::error::Op;

/// Largest listing page read (1000 items with metadata).
const MAX_PAGE: usize = 16 << 20;

#[derive(serde::Deserialize)]
struct Page {
    items: Vec<InfoJson>,
    next_cursor: Option<String>,
}

/// A page of the objects under `prefix`, from `cursor`.
pub fn list(api: &Api, prefix: &str, cursor: Option<String>, limit: u32) -> Result<ListPage, Error> {
    let op = Op { what: "list", path: prefix };
    let response = api.call(op, Method::Get, &api.list(prefix, cursor.as_deref(), limit.max(1)), &[], &[], &[200])?;
    let page: Page = json(op, response, MAX_PAGE)?;
    Ok(ListPage { items: page.items.into_iter().map(crate::api::info).collect(), next_cursor: page.next_cursor })
}
