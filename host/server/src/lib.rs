//! `stowage serve`: the host's storage pipeline (policies → driver) over HTTP(S), so a web host
//! can keep nothing on its own disk and stream every operation to a services host.
//!
//! Routes: `PUT|GET|HEAD|DELETE /v1/objects/{name}/{path}` (raw streaming bodies),
//! `GET /v1/list/{name}`, `/v1/uploads/...` (resumable uploads), `GET /v1/signed/{name}/{path}`
//! (signed, expiring URLs),
//! `GET /healthz`, `GET /readyz`, `GET /metrics`. Every other `/v1` route and `/metrics` need an
//! API key.
//! TLS (rustls) unless the config says `dev_mode = true`.

mod auth;
mod errors;
mod health;
mod list;
mod metrics;
mod objects;
mod request;
pub mod settings;
pub mod signed;
mod tls;
mod uploads;

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

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    storage: Arc<Storage>,
    keys: auth::ApiKeys,
    metrics: Arc<metrics::Metrics>,
    /// Signs download URLs; none: no signed URLs are served.
    url_secret: Option<Arc<[u8]>>,
    /// Resumable uploads in progress.
    uploads: Arc<uploads::Sessions>,
}

/// The routes over `storage`, `/v1` guarded by `keys`.
fn router(storage: Arc<Storage>, keys: auth::ApiKeys, url_secret: Option<Arc<[u8]>>) -> Router {
    let state = AppState { storage, keys, metrics: Arc::default(), url_secret, uploads: Arc::default() };
    let reaped = Arc::downgrade(&state.uploads);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            let Some(sessions) = reaped.upgrade() else { return };
            sessions.reap(uploads::IDLE_LIMIT).await;
        }
    });
    let require_key = || middleware::from_fn_with_state(state.clone(), auth::require_key);
    let v1 = Router::new()
        .route(
            "/v1/objects/{name}/{*path}",
            get(objects::get).put(objects::put).head(objects::head).delete(objects::delete),
        )
        .route("/v1/list/{name}", get(list::list))
        .route("/v1/uploads/{name}/{*path}", axum::routing::post(uploads::create))
        .route("/v1/upload-sessions/{id}", axum::routing::patch(uploads::append).head(uploads::offset).delete(uploads::discard))
        .route("/v1/upload-sessions/{id}/complete", axum::routing::post(uploads::complete))
        .route_layer(require_key())
        // Outside the key check, so refused requests are counted too.
        .route_layer(middleware::from_fn_with_state(state.clone(), metrics::count));
    let metrics = Router::new().route("/metrics", get(metrics::metrics)).route_layer(require_key());
    Router::new()
        .merge(v1)
        .merge(metrics)
        // The signature is the credential: no key.
        .route("/v1/signed/{name}/{*path}", get(signed::get))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(middleware::from_fn(request::with_request_id))
        .with_state(state)
}

/// How often a serving host settles what crashed writes left and sweeps orphaned temp
/// objects (its own dropped writes' too).
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs the host's upkeep while it serves: every [`MAINTENANCE_EVERY`], reconcile open
/// intents and sweep orphans; on every new checkpoint, copy it to the checkpoint disk.
fn spawn_maintenance(storage: Arc<Storage>) {
    let weak = Arc::downgrade(&storage);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
        tick.tick().await; // the first tick is now: start-up did this already
        loop {
            tick.tick().await;
            let Some(storage) = weak.upgrade() else { return };
            if let Err(e) = storage.reconcile().await {
                tracing::warn!(error = %e, "reconciling open intents failed");
            }
            if let Err(e) = storage.sweep_orphans().await {
                tracing::warn!(error = %e, "sweeping orphaned temp objects failed");
            }
        }
    });
    let Some(mut checkpoints) = storage.ledger().subscribe_checkpoints() else { return };
    let weak = Arc::downgrade(&storage);
    tokio::spawn(async move {
        while checkpoints.changed().await.is_ok() {
            let Some(storage) = weak.upgrade() else { return };
            if let Err(e) = storage.copy_checkpoint().await {
                tracing::error!(error = %e, "could not copy a ledger checkpoint to the checkpoint disk");
            }
        }
    });
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
}

/// How long a request body may stall before the request is given up (a stalled upload would
/// otherwise hold a driver instance for ever).
pub(crate) const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `storage` as `settings` say until the process ends. `on_listening` is told the bound
/// address (useful with port 0) before the first connection is accepted.
pub async fn serve(storage: Arc<Storage>, settings: Settings, on_listening: impl FnOnce(SocketAddr, bool)) -> Result<(), ServeError> {
    let listener = TcpListener::bind(settings.listen).await.map_err(|source| ServeError::Bind { addr: settings.listen, source })?;
    let local = listener.local_addr().map_err(ServeError::Accept)?;
    let acceptor = settings.tls.map(tokio_rustls::TlsAcceptor::from);
    on_listening(local, acceptor.is_some());
    spawn_maintenance(storage.clone());
    let app = router(storage, settings.keys, settings.url_secret);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait a moment rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let served = match acceptor {
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), service).await,
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
