//! Reloading without downtime: on SIGHUP, `serve` re-reads its config and plugins, checks them
//! as a start would (every plugin verified and compiled, the wiring checked, `[server]`
//! resolved), then swaps the new set in at once. Requests in flight finish on the set they
//! started on; new ones get the new set. A config, plugin or wiring that is refused changes
//! nothing: the last good set keeps serving, the reason is logged, counted in `/metrics`, and
//! written to the status file `stowage reload` waits on.
//!
//! What a reload swaps: disks, policies and their plugins, the API keys, the URL-signing
//! secret and the TLS certificate. What needs a restart (and a reload that changes it is
//! refused, so nobody believes it took effect): the ledger, the listen address, TLS on or
//! off, and `[server.timeouts]` / `[server.limits]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use stowage_runtime::Storage;

use crate::{AppState, Settings, auth};

/// One set a host serves with: what a reload replaces as a whole.
pub struct Active {
    /// Disks, policies and the ledger.
    pub(crate) storage: Arc<Storage>,
    /// Who may call `/v1`.
    pub(crate) keys: auth::ApiKeys,
    /// Signs download URLs, if configured.
    pub(crate) url_secret: Option<Arc<[u8]>>,
    /// TLS, or none in development mode.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where it listens (a reload may not change it).
    listen: std::net::SocketAddr,
    /// Its timeouts and limits (a reload may not change them).
    tuning: crate::settings::Tuning,
}

impl Active {
    /// The set of `storage` under `settings`.
    pub fn new(storage: Arc<Storage>, settings: Settings) -> Active {
        Active {
            storage,
            keys: settings.keys,
            url_secret: settings.url_secret,
            tls: settings.tls.map(tokio_rustls::TlsAcceptor::from),
            listen: settings.listen,
            tuning: settings.tuning,
        }
    }
}

/// Where a reload reads the config from: what `serve` was started with.
#[derive(Debug, Clone)]
pub struct Source {
    /// `--config`, or none for `./stowage.toml` / the embedded default.
    pub config: Option<PathBuf>,
    /// `--listen`, which overrides `[server] listen` then and now.
    pub listen: Option<String>,
    /// The status file `stowage reload` reads (see [`status_file`]).
    pub status: PathBuf,
}

/// The file a serving host keeps beside its ledger: its pid and the outcome of its last
/// reload, one JSON object, replaced atomically. `stowage reload` finds the host by it.
pub fn status_file(ledger: &Path) -> PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(".serve.json");
    PathBuf::from(p)
}

/// What `/metrics` says of reloads.
pub struct Reloads {
    /// Reloads that swapped a new set in.
    pub(crate) done: AtomicU64,
    /// Reloads refused.
    pub(crate) failed: AtomicU64,
    /// Reloads asked for (each SIGHUP that started one).
    generation: AtomicU64,
    /// sha256 of the config in force.
    pub(crate) sha256: std::sync::Mutex<String>,
}

impl Reloads {
    /// No reload yet; the config in force hashes to `sha256`.
    pub fn new(sha256: &str) -> Reloads {
        Reloads { done: AtomicU64::new(0), failed: AtomicU64::new(0), generation: AtomicU64::new(0), sha256: std::sync::Mutex::new(sha256.to_string()) }
    }

    /// The config in force.
    pub(crate) fn sha256(&self) -> String {
        self.sha256.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Listens for SIGHUP and reloads from `source` on each, one reload at a time (signals that
/// arrive during one are coalesced into the next). Writes the status file now, so `stowage
/// reload` can find this process.
pub fn on_hangup(state: AppState, source: Source) -> std::io::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    write_status(&source.status, &state, None);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            state.reloads.generation.fetch_add(1, Ordering::Relaxed);
            let outcome = reload(&state, &source).await;
            match &outcome {
                Ok(sha256) => {
                    state.reloads.done.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(sha256, "reloaded: new requests use the new config and plugins");
                }
                Err(reason) => {
                    state.reloads.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(reason, "reload refused: the last good config and plugins keep serving");
                }
            }
            write_status(&source.status, &state, outcome.err());
        }
    });
    Ok(())
}

/// Reads, checks and builds the set `source` describes, and swaps it in; the new config's
/// sha256, or why nothing changed.
async fn reload(state: &AppState, source: &Source) -> Result<String, String> {
    let current = state.active.load_full();
    let (config, listen) = (source.config.clone(), source.listen.clone());
    // Reading and verifying plugins, and compiling them, is blocking work: off the async
    // workers, on the storage runtime's blocking pool.
    let old = current.storage.clone();
    let built = state
        .work
        .spawn_blocking(move || {
            let (loaded, settings) = crate::settings::load(config.as_deref(), listen.as_deref()).map_err(|e| e.to_string())?;
            let handle = tokio::runtime::Handle::current();
            let storage = handle.block_on(old.reload(&loaded)).map_err(|e| e.to_string())?;
            Ok::<_, String>((loaded.sha256, settings, storage))
        })
        .await
        .map_err(|e| format!("the reload did not run to its end: {e}"))?;
    let (sha256, settings, storage) = built?;
    let restart = |what: &str| Err(format!("{what} differs from the running host's: that needs a restart (nothing was changed)"));
    if settings.listen != current.listen {
        return restart("the listen address");
    }
    if settings.tls.is_some() != current.tls.is_some() {
        return restart("TLS on or off");
    }
    if settings.tuning != current.tuning {
        return restart("[server.timeouts] or [server.limits]");
    }
    state.active.store(Arc::new(Active::new(Arc::new(storage), settings)));
    state.readiness.forget();
    if let Ok(mut s) = state.reloads.sha256.lock() {
        s.clone_from(&sha256);
    }
    Ok(sha256)
}

/// Replaces the status file: pid, reloads asked for, the config in force, the last refusal.
fn write_status(path: &Path, state: &AppState, refused: Option<String>) {
    let status = serde_json::json!({
        "pid": std::process::id(),
        "generation": state.reloads.generation.load(Ordering::Relaxed),
        "sha256": state.reloads.sha256(),
        "ok": refused.is_none(),
        "error": refused,
    });
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::write(&tmp, status.to_string()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "cannot write the status file `stowage reload` reads");
    }
}
