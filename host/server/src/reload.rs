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
use std::sync::atomic::Ordering;

use stowage_runtime::ConfigError;

use crate::active::Active;
use crate::state::AppState;

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

/// SIGHUPs, listened for from before the host starts (so one that arrives while it loads is
/// kept for later instead of ending the process).
pub struct Hangups(tokio::signal::unix::Signal);

impl Hangups {
    /// Starts listening: from now on SIGHUP no longer ends the process.
    pub fn listen() -> std::io::Result<Hangups> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map(Hangups)
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config (or a plugin it names) is refused, every problem with its line.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The new set could not be built (a plugin that does not compile or link, wiring).
    #[error("{0}")]
    Start(Box<stowage_runtime::StartError>),
    /// Something only a restart can change differs.
    #[error("{0} differs from the running host's: that needs a restart (nothing was changed)")]
    NeedsRestart(&'static str),
    /// The reload's task did not finish.
    #[error("the reload did not run to its end: {0}")]
    Aborted(String),
}

/// Reloads from `source` on each SIGHUP, one reload at a time (signals that arrive during one
/// are coalesced into the next). Writes the status file now, so `stowage reload` can find
/// this process.
pub(crate) fn on_hangup(state: AppState, source: Source, hangups: Hangups) {
    let Hangups(mut hangups) = hangups;
    write_status(&source.status, &state, None, None);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            state.reloads.generation.fetch_add(1, Ordering::Relaxed);
            let (tried, outcome) = reload(&state, &source).await;
            let refused = outcome.as_ref().err().map(ToString::to_string);
            // The status first: whoever sees the counter move finds the status file current.
            write_status(&source.status, &state, tried.as_deref(), refused.clone());
            match (&outcome, refused) {
                (Ok(()), _) => {
                    state.reloads.done.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        sha256 = tried.as_deref().unwrap_or_default(),
                        "reloaded: new requests use the new config and plugins"
                    );
                }
                (Err(_), reason) => {
                    state.reloads.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        reason = reason.unwrap_or_default(),
                        "reload refused: the last good config and plugins keep serving"
                    );
                }
            }
        }
    });
}

/// Reads, checks and builds the set `source` describes, and swaps it in. Returns the sha256 of
/// the config it read (none if it could not be read) and whether the set was swapped.
async fn reload(state: &AppState, source: &Source) -> (Option<String>, Result<(), ReloadError>) {
    let current = state.active.load_full();
    let (config, listen) = (source.config.clone(), source.listen.clone());
    // Reading and verifying plugins is blocking work: off the async workers, on the storage
    // runtime's blocking pool.
    let loaded = state.work.spawn_blocking(move || crate::settings::load(config.as_deref(), listen.as_deref())).await;
    let (loaded, settings) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => return (None, Err(e.into())),
        Err(e) => return (None, Err(ReloadError::Aborted(e.to_string()))),
    };
    let tried = Some(loaded.sha256.clone());
    // What only a restart changes is compared before anything is built.
    let needs_restart = if settings.listen != current.listen {
        Some("the listen address")
    } else if settings.tls.is_some() != current.tls.is_some() {
        Some("TLS on or off")
    } else if settings.tuning != current.tuning {
        Some("[server.timeouts] or [server.limits]")
    } else {
        None
    };
    if let Some(what) = needs_restart {
        return (tried, Err(ReloadError::NeedsRestart(what)));
    }
    // Compiling is blocking work too; the wiring check runs the new plugins.
    let old = current.storage.clone();
    let built = state
        .work
        .spawn_blocking(move || {
            tokio::runtime::Handle::current()
                .block_on(old.reload(&loaded))
                .map(|s| (s, loaded.sha256))
                .map_err(Box::new)
        })
        .await;
    let (storage, sha256) = match built {
        Ok(Ok(built)) => built,
        Ok(Err(e)) => return (tried, Err(ReloadError::Start(e))),
        Err(e) => return (tried, Err(ReloadError::Aborted(e.to_string()))),
    };
    state.active.store(Arc::new(Active::new(Arc::new(storage), settings)));
    state.readiness.forget();
    if let Ok(mut s) = state.reloads.sha256.lock() {
        *s = sha256;
    }
    (tried, Ok(()))
}

/// Replaces the status file: this process (pid and identity), reloads asked for, the config
/// in force, the config the last reload read, and its refusal.
fn write_status(path: &Path, state: &AppState, tried: Option<&str>, refused: Option<String>) {
    let status = serde_json::json!({
        "pid": std::process::id(),
        "host": stowage_runtime::HostId::current().to_string(),
        "generation": state.reloads.generation.load(Ordering::Relaxed),
        "sha256": state.reloads.sha256(),
        "tried": tried,
        "ok": refused.is_none(),
        "error": refused,
    });
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::write(&tmp, status.to_string()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(file = %path.display(), error = %e, "cannot write the status file `stowage reload` reads");
    }
}
