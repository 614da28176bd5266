//! `GET /v1/list/{name}?prefix=&cursor=&limit=`: one JSON page and the cursor of the next.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use stowage_runtime::Address;

use crate::errors::ApiError;
use crate::objects::info_json;
use crate::request::Caller;
use crate::state::AppState;

/// The most items one page holds.
const MAX_LIMIT: u32 = 1000;

/// The query string.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Lists a page.
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
    Caller(req): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT);
    let addr = Address { name, path: q.prefix };
    let page = state.storage().list(&addr, &req, q.cursor.as_deref(), limit).await?;
    let items: Vec<stowage_api::InfoJson> = page.items.iter().map(info_json).collect();
    Ok(Json(serde_json::json!({ "items": items, "next_cursor": page.next_cursor })))
}
