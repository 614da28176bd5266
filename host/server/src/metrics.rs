//! `GET /metrics`: Prometheus text. Requests, durations and bytes per operation and storage
//! name (class or disk; names this host does not have count as `unknown`, so a client cannot
//! grow the label set), policy denials, plugin restarts per disk, readiness probes, reloads and
//! scheduled fixity checks (`fixity.rs`).
//! The counts themselves are kept in `counters.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The storage name a request addressed, if the host knows it.
pub fn label_name(state: &AppState, name: &str) -> String {
    if state.storage().knows(name) { name.to_string() } else { "unknown".to_string() }
}

/// Middleware on `/v1`: counts every request and its duration.
pub async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let operation = match (request.method().as_str(), request.uri().path().starts_with("/v1/list/")) {
        (_, true) => "list",
        ("PUT", _) => "put",
        ("GET", _) => "get",
        ("HEAD", _) => "stat",
        ("DELETE", _) => "delete",
        _ => "other",
    };
    // /v1/objects/{name}/... or /v1/list/{name}
    let name = request.uri().path().split('/').nth(3).unwrap_or_default().to_string();
    let name = label_name(&state, &name);
    let response = next.run(request).await;
    state.metrics.record((operation, name, response.status().as_u16()), started.elapsed().as_secs_f64());
    response
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let m = &state.metrics;
    let requests = m.requests();
    let _ = writeln!(out, "# HELP stowage_requests_total HTTP API requests.\n# TYPE stowage_requests_total counter");
    for ((op, name, status), (n, _)) in &requests {
        let _ = writeln!(
            out,
            "stowage_requests_total{{operation=\"{op}\",name=\"{}\",status=\"{status}\"}} {n}",
            label(name)
        );
    }
    let _ = writeln!(
        out,
        "# HELP stowage_request_duration_seconds Time to answer (to the first byte of a download).\n# TYPE stowage_request_duration_seconds summary"
    );
    let mut durations: BTreeMap<(&str, &str), (u64, f64)> = BTreeMap::new();
    for ((op, name, _), (n, secs)) in &requests {
        let e = durations.entry((op, name)).or_default();
        e.0 += n;
        e.1 += secs;
    }
    for ((op, name), (n, secs)) in &durations {
        let l = format!("operation=\"{op}\",name=\"{}\"", label(name));
        let _ = writeln!(
            out,
            "stowage_request_duration_seconds_sum{{{l}}} {secs}\nstowage_request_duration_seconds_count{{{l}}} {n}"
        );
    }
    let probes = state.readiness.probes.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP stowage_readiness_probes_total Disk probes /readyz ran (one per interval at most, however many ask).\n# TYPE stowage_readiness_probes_total counter\nstowage_readiness_probes_total {probes}"
    );
    let denials: u64 = requests.iter().filter(|((_, _, s), _)| *s == 403).map(|(_, (n, _))| n).sum();
    let _ = writeln!(
        out,
        "# HELP stowage_policy_denials_total Requests refused (403: by a policy or the backend).\n# TYPE stowage_policy_denials_total counter\nstowage_policy_denials_total {denials}"
    );
    let bytes = m.bytes();
    let _ =
        writeln!(out, "# HELP stowage_bytes_total Object bytes received and sent.\n# TYPE stowage_bytes_total counter");
    for (name, (received, sent)) in &bytes {
        let _ = writeln!(
            out,
            "stowage_bytes_total{{name=\"{0}\",direction=\"received\"}} {received}\nstowage_bytes_total{{name=\"{0}\",direction=\"sent\"}} {sent}",
            label(name)
        );
    }
    let _ = writeln!(
        out,
        "# HELP stowage_plugin_restarts_total Driver instances replaced after a fault.\n# TYPE stowage_plugin_restarts_total counter"
    );
    for (disk, n) in state.storage().disk_restarts() {
        let _ = writeln!(out, "stowage_plugin_restarts_total{{disk=\"{}\"}} {n}", label(disk));
    }
    let queues =
        state.storage().fallback_queues().into_iter().map(|(d, n, age)| (d.to_string(), n, age)).collect::<Vec<_>>();
    let _ = writeln!(
        out,
        "# HELP stowage_fallback_queue_length Writes and deletes waiting on a disk's fallback to be synced to it.\n# TYPE stowage_fallback_queue_length gauge"
    );
    for (disk, n, _) in &queues {
        let _ = writeln!(out, "stowage_fallback_queue_length{{disk=\"{}\"}} {n}", label(disk));
    }
    let _ = writeln!(
        out,
        "# HELP stowage_fallback_oldest_age_seconds How long the oldest queued entry has waited (0: none waits).\n# TYPE stowage_fallback_oldest_age_seconds gauge"
    );
    for (disk, _, age) in &queues {
        let secs = age.map_or(0.0, |a| a.as_secs_f64());
        let _ = writeln!(out, "stowage_fallback_oldest_age_seconds{{disk=\"{}\"}} {secs}", label(disk));
    }
    let r = &state.reloads;
    let (done, failed) =
        (r.done.load(std::sync::atomic::Ordering::Relaxed), r.failed.load(std::sync::atomic::Ordering::Relaxed));
    let _ = writeln!(
        out,
        "# HELP stowage_config_reloads_total Reloads (SIGHUP) that swapped in a new config and plugins.\n# TYPE stowage_config_reloads_total counter\nstowage_config_reloads_total {done}"
    );
    let _ = writeln!(
        out,
        "# HELP stowage_config_reload_failures_total Reloads refused (the last good set kept serving).\n# TYPE stowage_config_reload_failures_total counter\nstowage_config_reload_failures_total {failed}"
    );
    let _ = writeln!(
        out,
        "# HELP stowage_config_info The config in force (sha256 of its text).\n# TYPE stowage_config_info gauge\nstowage_config_info{{sha256=\"{}\"}} 1",
        label(&r.sha256())
    );
    state.fixity.render(&mut out);
    let mut response = (StatusCode::OK, out).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}
