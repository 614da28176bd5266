//! `/healthz` (the process answers) and `/readyz` (every disk does a real write, read and
//! delete within a time limit, and the ledger can record; `503` if not). Both answer without a
//! key, so they say only ok or the kind of failure; the detail goes to the log. A readiness
//! answer is reused for `readiness_interval`: however many ask, at most one probe runs at a
//! time and one per interval, so probes cannot be used to load the disks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;

/// Alive.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The last disk probe and when it ran.
pub struct Readiness {
    interval: Duration,
    last: Mutex<Option<(Instant, bool, serde_json::Value)>>,
    /// Held while a probe runs: the others wait for its answer.
    running: tokio::sync::Mutex<()>,
    /// Probes run since start.
    pub probes: AtomicU64,
}

impl Readiness {
    /// Reuses a probe's answer for `interval`.
    pub fn new(interval: Duration) -> Readiness {
        Readiness { interval, last: Mutex::new(None), running: tokio::sync::Mutex::new(()), probes: AtomicU64::new(0) }
    }

    /// Forgets the last answer (a reload brought other disks): the next caller probes.
    pub fn forget(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }

    fn fresh(&self) -> Option<(bool, serde_json::Value)> {
        let last = self.last.lock().ok()?;
        let (at, ok, disks) = last.as_ref()?;
        (at.elapsed() < self.interval).then(|| (*ok, disks.clone()))
    }

    /// The disks' answer: a recent probe's, or a new probe's (one at a time).
    async fn disks(&self, state: &AppState) -> (bool, serde_json::Value) {
        if let Some(answer) = self.fresh() {
            return answer;
        }
        let _turn = self.running.lock().await;
        // Someone else's probe may have answered while this one waited.
        if let Some(answer) = self.fresh() {
            return answer;
        }
        self.probes.fetch_add(1, Ordering::Relaxed);
        let storage = state.storage();
        // The probe does file I/O: on the storage work threads.
        let answer = match state.work.spawn(async move { probe_disks(&storage).await }).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(error = %e, "the readiness probe failed to run");
                (false, serde_json::json!({}))
            }
        };
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), answer.0, answer.1.clone()));
        }
        answer
    }
}

/// Ready: a round trip on every disk (reused for the interval) and the ledger's health (as
/// of now), JSON per disk.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let (disks_ok, disks) = state.readiness.disks(&state).await;
    // A host whose ledger cannot record refuses every guarded operation: not ready.
    let ledger = match state.storage().ledger().health() {
        Ok(()) => serde_json::json!({ "ok": true }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the PHI ledger cannot record");
            serde_json::json!({ "ok": false, "error": "audit-unavailable" })
        }
    };
    let ready = disks_ok && ledger["ok"] == true;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": ready, "disks": disks, "ledger": ledger })))
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
