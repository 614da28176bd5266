//! `/healthz` (the process answers) and `/readyz` (every disk does a real write, read and
//! delete, within a time limit; `503` if one fails). Both answer without a key, so they say
//! only ok or the kind of failure; the detail goes to the log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;

/// Alive.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: a round trip on every disk, JSON per disk.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let mut disks = serde_json::Map::new();
    let mut all_ok = true;
    for (disk, result) in state.storage.probe().await {
        let entry = match result {
            Ok(took) => serde_json::json!({ "ok": true, "ms": took.as_secs_f64() * 1e3 }),
            Err(e) => {
                all_ok = false;
                tracing::warn!(disk, error = %e, "readiness probe failed");
                serde_json::json!({ "ok": false, "error": e.kind() })
            }
        };
        disks.insert(disk, entry);
    }
    // A host whose ledger cannot record refuses every guarded operation: not ready.
    let ledger = match state.storage.ledger().health() {
        Ok(()) => serde_json::json!({ "ok": true }),
        Err(e) => {
            all_ok = false;
            tracing::warn!(error = %e, "readiness: the PHI ledger cannot record");
            serde_json::json!({ "ok": false, "error": "audit-unavailable" })
        }
    };
    let status = if all_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": all_ok, "disks": disks, "ledger": ledger })))
}
