//! `/healthz` (the process answers) and `/readyz` (every disk does a real write, read and
//! delete within a time limit, and the ledger's database answers and can record; `503` if
//! not). Both answer without a
//! key, so they say only ok or the kind of failure; the detail goes to the log. A readiness
//! answer is reused for `readiness_interval` (`readiness.rs`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::state::AppState;

/// How long the readiness probe waits for the ledger's database (as for each disk).
const LEDGER_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Alive.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: a round trip on every disk and, alongside, a read of the ledger's database (both
/// reused for the interval), and the ledger's health as of now; JSON per disk.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let probe = async {
        let storage = state.storage();
        // The probe does file and database I/O: on the storage work threads.
        let probed = state.work.spawn(async move {
            // Commits made after this count prove the ledger records, whatever the read found.
            let commits = storage.ledger().commits();
            let ledger = {
                let storage = storage.clone();
                let read = tokio::task::spawn_blocking(move || storage.ledger().probe());
                async move {
                    match tokio::time::timeout(LEDGER_PROBE_TIMEOUT, read).await {
                        Ok(Ok(answer)) => answer,
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no answer within {} s", LEDGER_PROBE_TIMEOUT.as_secs())),
                    }
                }
            };
            let ((disks_ok, disks), ledger) = tokio::join!(probe_disks(&storage), ledger);
            if let Err(e) = &ledger {
                tracing::warn!(error = %e, "readiness: the PHI ledger's database does not answer");
            }
            let answer = serde_json::json!({ "disks": disks, "ledger": ledger.is_ok(), "commits": commits });
            (disks_ok, answer)
        });
        match probed.await {
            Ok(answer) => answer,
            Err(e) => {
                // Not ready, and not for the ledger's sake: its answer is unknown.
                tracing::error!(error = %e, "the readiness probe failed to run");
                (false, serde_json::json!({ "disks": {}, "ledger": null }))
            }
        }
    };
    let (disks_ok, probed) = state.readiness.disks(probe).await;
    // A host whose ledger cannot record refuses every guarded operation: not ready. A failed
    // commit shows at once, and so does a commit that went through since a failed read.
    let storage = state.storage();
    let committed_since = probed["commits"].as_u64().is_some_and(|c| storage.ledger().commits() > c);
    let ledger = match storage.ledger().health() {
        Ok(()) if probed["ledger"] != false || committed_since => serde_json::json!({ "ok": true }),
        Ok(()) => serde_json::json!({ "ok": false, "error": "audit-unavailable" }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the PHI ledger cannot record");
            serde_json::json!({ "ok": false, "error": "audit-unavailable" })
        }
    };
    let ready = disks_ok && ledger["ok"] == true;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": ready, "disks": probed["disks"], "ledger": ledger })))
}

async fn probe_disks(storage: &stowage_runtime::Storage) -> (bool, serde_json::Value) {
    let mut disks = serde_json::Map::new();
    let mut all_ok = true;
    for (disk, result) in storage.probe().await {
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
    (all_ok, serde_json::Value::Object(disks))
}
