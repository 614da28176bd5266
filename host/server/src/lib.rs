//! `stowage serve`: the host's storage pipeline (policies → driver) over HTTP(S), so a web host
//! can keep nothing on its own disk and stream every operation to a services host.
//!
//! Routes: `PUT|GET|HEAD|DELETE /v1/objects/{name}/{path}` (raw streaming bodies),
//! `GET /v1/list/{name}`, `/v1/uploads/...` (resumable uploads), `GET /v1/signed/{name}/{path}`
//! (signed, expiring URLs),
//! `GET /healthz`, `GET /readyz`, `GET /metrics`. Every other `/v1` route and `/metrics` need an
//! API key.
//! TLS (rustls) unless the config says `dev_mode = true`.

// Data: imported by the state and the handlers; imports neither.
mod active;
mod counters;
mod errors;
mod fixity;
mod keys;
mod per_key;
mod readiness;
mod sessions;
pub mod settings;
mod tls;
// What every handler shares, over the data above.
mod state;
// Handlers and middleware, over the state.
mod append;
mod auth;
mod durable;
mod health;
mod leases;
mod limits;
mod list;
mod metrics;
mod objects;
mod openapi;
pub mod reload;
mod request;
pub mod signed;
mod tus;
mod uploads;
// The connection's send-stall guard.
mod stall;

/// Entry points for the fuzz targets (`tests/fuzz`): the parsers of what a client sends.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a `Range` header for an object of `size` bytes; true when a range is served.
    pub fn range(value: &str, size: u64) -> bool {
        crate::objects::parse_range(value, || Some(size)).is_ok_and(|r| r.is_some())
    }

    /// Checks the path and query of a signed URL (`/v1/signed/NAME/PATH?QUERY`) under `secret` at `now`.
    pub fn signed_url(secret: &[u8], uri: &str, now: u64) -> bool {
        crate::signed::check_uri(secret, uri, now)
    }
}

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use stowage_runtime::Storage;
use tokio::net::TcpListener;

pub use settings::{Settings, SettingsError};

use crate::state::AppState;

/// The routes over `state`, `/v1` guarded by its keys.
fn router(state: AppState) -> Router {
    let reaped = state.downgrade();
    state.work.spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            let Some(shared) = reaped.upgrade() else { return };
            let state = AppState::from_shared(shared);
            state.uploads.reap(crate::sessions::IDLE_LIMIT).await;
            if let Some(durable) = state.durable.clone() {
                durable::reap(&state, &durable, crate::sessions::IDLE_LIMIT).await;
            }
        }
    });
    let require_key = || middleware::from_fn_with_state(state.clone(), auth::require_key);
    let on_work_threads = || middleware::from_fn_with_state(state.clone(), limits::on_work_threads);
    let per_key = || middleware::from_fn_with_state(state.clone(), limits::per_key);
    // Layers run outside in: metrics, key, the credential's cap, then the work threads.
    let v1 = Router::new()
        .route(
            "/v1/objects/{name}/{*path}",
            get(objects::get).put(objects::put).head(objects::head).delete(objects::delete),
        )
        .route("/v1/list/{name}", get(list::list))
        .route("/v1/urls/{name}/{*path}", axum::routing::post(signed::issue))
        .route("/v1/uploads/{name}/{*path}", axum::routing::post(uploads::create))
        .route(
            "/v1/upload-sessions/{id}",
            axum::routing::patch(uploads::append).head(uploads::offset).delete(uploads::discard),
        )
        .route("/v1/upload-sessions/{id}/complete", axum::routing::post(uploads::complete))
        .route_layer(on_work_threads())
        .route_layer(per_key())
        .route_layer(require_key())
        // Outside the key check, so refused requests are counted too.
        .route_layer(middleware::from_fn_with_state(state.clone(), metrics::count))
        // Every answer to a tus request says so (refusals included).
        .route_layer(middleware::from_fn(tus::stamp_answers));
    let metrics = Router::new().route("/metrics", get(metrics::metrics)).route_layer(require_key());
    // The signature is the credential: no key, but the same cap (all signed URLs share one).
    let signed = Router::new()
        .route("/v1/signed/{name}/{*path}", get(signed::get))
        .route_layer(on_work_threads())
        .route_layer(per_key());
    // tus discovery needs no key and tells nothing of the host's data (see `tus::options`).
    let discovery = Router::new()
        .route("/v1/uploads/{name}/{*path}", axum::routing::options(tus::options_create))
        .route("/v1/upload-sessions/{id}", axum::routing::options(tus::options));
    Router::new()
        .merge(v1)
        .merge(discovery)
        .merge(metrics)
        .merge(signed)
        .route("/v1/openapi.json", get(openapi::document))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .layer(middleware::from_fn(errors::json_rejections))
        .layer(middleware::from_fn(request::with_request_id))
        .with_state(state)
}

/// Any route the API does not have.
async fn not_found() -> errors::ApiError {
    errors::ApiError::not_found("no such route")
}

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Accepting connections failed for good.
    #[error("accepting connections failed: {0}")]
    Accept(std::io::Error),
    /// The storage work threads could not start.
    #[error("cannot start the storage work threads: {0}")]
    Runtime(std::io::Error),
}

/// How often a serving host settles what crashed writes left and sweeps orphaned temp
/// objects (its own dropped writes' too).
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// How often a serving host moves queued writes from fallbacks to their disks.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the host's upkeep while it serves: every [`MAINTENANCE_EVERY`], reconcile open
/// intents and sweep orphans; every [`SYNC_EVERY`], sync fallback queues; on every new
/// checkpoint, copy it to the checkpoint disk. Each time on the set in force then.
fn spawn_maintenance(state: &AppState) {
    let weak = state.downgrade();
    state.work.spawn(async move {
        let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
        tick.tick().await; // the first tick is now: start-up did this already
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            let storage = shared.storage();
            drop(shared);
            if let Err(e) = storage.reconcile().await {
                tracing::warn!(error = %e, "reconciling open intents failed");
            }
            if let Err(e) = storage.sweep_orphans().await {
                tracing::warn!(error = %e, "sweeping orphaned temp objects failed");
            }
        }
    });
    // The fallback syncer and the mirrors' repairer: a pass every few seconds while a disk of
    // the set in force has a fallback or is a mirror (a pass over empty queues lists each
    // fallback's queue and each mirror's marks, nothing more).
    let weak = state.downgrade();
    state.work.spawn(async move {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            let storage = shared.storage();
            drop(shared);
            if storage.has_mirrors() {
                match storage.repair_mirrors().await {
                    Ok(report) if !report.repaired.is_empty() || !report.failed.is_empty() => {
                        tracing::info!(
                            repaired = report.repaired.len(),
                            failed = report.failed.len(),
                            "worked through mirrors' repair marks"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "a mirror repair pass failed"),
                }
            }
            if storage.fallback_queues().is_empty() {
                continue;
            }
            match storage.sync_fallbacks().await {
                Ok(report) if !report.synced.is_empty() => {
                    tracing::info!(
                        synced = report.synced.len(),
                        waiting = report.waiting,
                        "synced queued writes to their disks"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "a fallback sync pass failed"),
            }
        }
    });
    // Every set shares the ledger: one subscription serves them all.
    let Some(mut checkpoints) = state.storage().ledger().subscribe_checkpoints() else { return };
    let weak = state.downgrade();
    state.work.spawn(async move {
        while checkpoints.changed().await.is_ok() {
            let Some(shared) = weak.upgrade() else { return };
            let storage = shared.storage();
            drop(shared);
            if let Err(e) = storage.copy_checkpoint().await {
                tracing::error!(error = %e, "could not copy a ledger checkpoint to the checkpoint disk");
            }
        }
    });
}

/// How often a host without `[fixity]` looks again (a reload may add it).
const FIXITY_UNSCHEDULED_POLL: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the scheduled fixity checks (`[fixity]`) while the host serves: `every` after the
/// start and after each round, every disk it names in turn on the set in force then, at most
/// `max_mib_per_sec`. Each check is recorded in the ledger (`fixity_checked`), its counts go to
/// `/metrics`, and its problems to the log (without paths).
fn spawn_fixity(state: &AppState) {
    let weak = state.downgrade();
    state.work.spawn(async move {
        loop {
            let Some(shared) = weak.upgrade() else { return };
            let plan = shared.active.load().fixity.clone();
            drop(shared);
            tokio::time::sleep(plan.as_ref().map_or(FIXITY_UNSCHEDULED_POLL, |p| p.every)).await;
            let Some(plan) = plan else { continue };
            let options = stowage_runtime::FsckOptions { max_bytes_per_sec: plan.max_bytes_per_sec, repair: false };
            for disk in &plan.disks {
                let Some(shared) = weak.upgrade() else { return };
                let storage = shared.storage();
                drop(shared);
                let req = stowage_runtime::Request {
                    actor: Some("stowage-fixity".into()),
                    authenticated_as: Some("host".into()),
                    ..stowage_runtime::Request::new()
                };
                let addr = stowage_runtime::Address { name: disk.clone(), path: String::new() };
                let result = storage.fsck(&addr, &req, &options).await;
                let Some(shared) = weak.upgrade() else { return };
                match result {
                    Ok(report) => {
                        if !report.is_clean() {
                            tracing::error!(
                                disk = %disk,
                                problems = report.problems.len(),
                                record = report.record_index,
                                "a scheduled fixity check found objects corrupted, missing, unrecorded or unreadable; see the ledger record"
                            );
                        }
                        shared.fixity.completed(&report);
                    }
                    Err(e) => {
                        tracing::warn!(disk = %disk, kind = e.kind().as_str(), "a scheduled fixity check could not run");
                        shared.fixity.failed(disk);
                    }
                }
            }
        }
    });
}

/// The connection settings of `tuning`: timeouts on the request head (which also bound an
/// idle keep-alive connection) and a cap on its size; HTTP/2 with bounded streams, header
/// lists and pings that close a dead peer.
fn connection_builder(tuning: &settings::Tuning) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(tuning.header)
        .max_buf_size(tuning.max_header_bytes.max(8192));
    b.http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(u32::try_from(tuning.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(tuning.header)
        .keep_alive_timeout(tuning.header);
    b
}

/// Serves `storage` as `settings` say until the process ends. `on_listening` is told the bound
/// address (useful with port 0) before the first connection is accepted. With `reload`, each
/// SIGHUP re-reads the config it names and swaps in the new set ([`reload`]).
pub async fn serve(
    storage: Arc<Storage>,
    settings: Settings,
    config_sha256: &str,
    reload: Option<(reload::Source, reload::Hangups)>,
    on_listening: impl FnOnce(SocketAddr, bool),
) -> Result<(), ServeError> {
    let tuning = settings.tuning;
    // A connection is a file descriptor: let the process have what the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if (n as usize) < tuning.max_connections + 256 => {
            tracing::warn!(
                limit = n,
                max_connections = tuning.max_connections,
                "the open-files limit is below max_connections"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let work = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(tuning.worker_threads)
        .thread_name("stowage-work")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let listen = settings.listen;
    let active = active::Active::new(storage, settings);
    let state = AppState::new(active, config_sha256, tuning, work.handle().clone());
    let served = accept_loop(state, listen, reload, on_listening).await;
    work.shutdown_background();
    served
}

async fn accept_loop(
    state: AppState,
    listen: SocketAddr,
    reload: Option<(reload::Source, reload::Hangups)>,
    on_listening: impl FnOnce(SocketAddr, bool),
) -> Result<(), ServeError> {
    let tuning = state.tuning;
    let listener = TcpListener::bind(listen).await.map_err(|source| ServeError::Bind { addr: listen, source })?;
    let local = listener.local_addr().map_err(ServeError::Accept)?;
    if let Some((source, hangups)) = reload {
        reload::on_hangup(state.clone(), source, hangups);
    }
    on_listening(local, state.active.load().tls.is_some());
    spawn_maintenance(&state);
    spawn_fixity(&state);
    let app = router(state.clone());
    let builder = Arc::new(connection_builder(&tuning));
    let connections = Arc::new(tokio::sync::Semaphore::new(tuning.max_connections.max(1)));
    loop {
        // At the cap, further connections wait in the kernel's backlog.
        let Ok(slot) = connections.clone().acquire_owned().await else { return Ok(()) };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait a moment rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        // The certificate of the set in force (a reload may bring a renewed one).
        let acceptor = state.active.load().tls.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let served = match acceptor {
                Some(acceptor) => match tokio::time::timeout(tuning.tls_handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        builder
                            .serve_connection(TokioIo::new(stall::StallIo::new(tls, tuning.send_stall)), service)
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => {
                    builder.serve_connection(TokioIo::new(stall::StallIo::new(tcp, tuning.send_stall)), service).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
