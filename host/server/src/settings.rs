//! The `[server]` table, checked and resolved: where to listen, TLS or (development only)
//! plain HTTP, and the API keys.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use std::ops::Range;

use stowage_runtime::LoadedConfig;
use stowage_runtime::config::{ConfigError, Report, ServerConfig, resolve_value};

use crate::keys::ApiKeys;

/// The shortest API key accepted outside development mode.
pub const MIN_KEY_LEN: usize = 32;

/// Why `stowage serve` will not start.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// No TLS and no development mode.
    #[error(
        "[server] has no tls = {{ cert, key }}: plain HTTP is refused outside development (set dev_mode = true for a development host)"
    )]
    PlainHttpRefused,
    /// No key at all.
    #[error("[server] api_keys is empty: every /v1 request needs a key, so nobody could use this host")]
    NoKeys,
    /// A key is too short.
    #[error("[server] api_keys[{0}] is shorter than {MIN_KEY_LEN} characters (allowed only with dev_mode = true)")]
    ShortKey(usize),
    /// A key could not be read (e.g. an unset environment variable).
    #[error("[server] {0}")]
    Key(String),
    /// The listen address does not parse.
    #[error("[server] listen = `{0}` is not an address like 127.0.0.1:8443")]
    Listen(String),
    /// The URL-signing secret is too short.
    #[error("[server] url_secret is shorter than {MIN_KEY_LEN} characters")]
    ShortUrlSecret,
    /// The certificate or key could not be used.
    #[error("[server] tls: {0}")]
    Tls(String),
}

/// How to serve.
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// TLS, or none in development mode.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Who may call `/v1`.
    pub keys: ApiKeys,
    /// Signs download URLs, if configured.
    pub url_secret: Option<Arc<[u8]>>,
    /// The base URL clients reach the host at (`public_url`), if configured.
    pub public_url: Option<String>,
    /// Timeouts and limits.
    pub tuning: Tuning,
    /// Scheduled fixity checks (`[fixity]`), if any.
    pub fixity: Option<stowage_runtime::config::FixityPlan>,
}

/// `[server.timeouts]` and `[server.limits]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The TLS handshake.
    pub tls_handshake: Duration,
    /// A request's head (and an idle keep-alive connection).
    pub header: Duration,
    /// A request body that sends nothing.
    pub body_idle: Duration,
    /// A response body the client does not read.
    pub send_stall: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Requests in flight per credential.
    pub max_requests_per_key: usize,
    /// Upload sessions per API key.
    pub max_uploads_per_key: usize,
    /// Upload sessions in all.
    pub max_uploads: usize,
    /// How long a readiness answer is reused.
    pub readiness_interval: Duration,
    /// Threads for storage work.
    pub worker_threads: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning::from_config(&ServerConfig::default())
    }
}

impl Tuning {
    /// The tuning `config` asks for, defaults where it says nothing.
    pub fn from_config(config: &ServerConfig) -> Tuning {
        let (t, l) = (&config.timeouts, &config.limits);
        let secs = |v: &Option<toml::Spanned<u64>>, default: u64| {
            Duration::from_secs(v.as_ref().map_or(default, |v| *v.get_ref()))
        };
        let n = |v: &Option<toml::Spanned<u64>>, default: u64| {
            usize::try_from(v.as_ref().map_or(default, |v| *v.get_ref())).unwrap_or(usize::MAX)
        };
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2) as u64;
        Tuning {
            tls_handshake: secs(&t.tls_handshake_secs, 10),
            header: secs(&t.header_secs, 15),
            body_idle: secs(&t.body_idle_secs, 60),
            send_stall: secs(&t.send_stall_secs, 30),
            max_connections: n(&l.max_connections, 4096),
            max_header_bytes: n(&l.max_header_kib, 64).saturating_mul(1024),
            max_requests_per_key: n(&l.max_requests_per_key, 128),
            max_uploads_per_key: n(&l.max_uploads_per_key, 16),
            max_uploads: n(&l.max_uploads, 64),
            readiness_interval: secs(&l.readiness_interval_secs, 5),
            worker_threads: n(&l.worker_threads, cpus),
        }
    }
}

impl Settings {
    /// Checks `[server]` of `loaded`, reporting every problem at its line; the settings when
    /// there is none. `listen` (from the command line) overrides `[server] listen`.
    pub fn check(loaded: &LoadedConfig, listen: Option<&str>, report: &mut Report<'_>) -> Option<Settings> {
        let config = &loaded.config.server;
        let header = report.table("server");
        let mut ok = true;
        let mut refuse = |report: &mut Report<'_>, span: Option<Range<usize>>, e: SettingsError| {
            ok = false;
            report.at(span, e.to_string());
        };
        let (listen_text, listen_span) = match (listen, &config.listen) {
            (Some(l), _) => (l, None),
            (None, Some(l)) => (l.get_ref().as_str(), Some(l.span())),
            (None, None) => ("127.0.0.1:8443", None),
        };
        let listen = listen_text
            .parse()
            .map_err(|_| refuse(report, listen_span, SettingsError::Listen(listen_text.to_string())))
            .ok();
        let tls = match (&config.tls, config.dev_mode) {
            (Some(tls), _) => {
                let chain = crate::tls::read_chain(&loaded.base_dir.join(tls.cert.get_ref()))
                    .map_err(|e| refuse(report, Some(tls.cert.span()), SettingsError::Tls(e)));
                let key = crate::tls::read_key(&loaded.base_dir.join(tls.key.get_ref()))
                    .map_err(|e| refuse(report, Some(tls.key.span()), SettingsError::Tls(e)));
                match (chain, key) {
                    (Ok(chain), Ok(key)) => crate::tls::server_config(chain, key)
                        .map_err(|e| refuse(report, Some(tls.cert.span()), SettingsError::Tls(e)))
                        .ok(),
                    _ => None,
                }
            }
            (None, true) => None,
            (None, false) => {
                refuse(report, header.clone(), SettingsError::PlainHttpRefused);
                None
            }
        };
        let mut keys: Vec<(String, String)> = Vec::with_capacity(config.api_keys.len());
        for (i, value) in config.api_keys.iter().enumerate() {
            match named_key(value.get_ref(), i) {
                Err(e) => refuse(report, Some(value.span()), e),
                Ok((_, key)) if key.len() < MIN_KEY_LEN && !config.dev_mode => {
                    refuse(report, Some(value.span()), SettingsError::ShortKey(i))
                }
                Ok((name, _)) if keys.iter().any(|(n, _)| *n == name) => refuse(
                    report,
                    Some(value.span()),
                    SettingsError::Key(format!(
                        "api_keys[{i}]: the name `{name}` is used by another key; each key needs its own, so the ledger can tell them apart"
                    )),
                ),
                Ok(named) => keys.push(named),
            }
        }
        if config.api_keys.is_empty() {
            refuse(report, header, SettingsError::NoKeys);
        }
        let url_secret = url_secret(config)
            .map_err(|e| refuse(report, config.url_secret.as_ref().map(|s| s.span()), e))
            .ok()
            .flatten();
        let listen = listen?;
        if !ok {
            return None;
        }
        Some(Settings {
            listen,
            tls,
            keys: ApiKeys::new(&keys),
            url_secret,
            public_url: config.public_url.as_ref().map(|u| u.trim_end_matches('/').to_string()),
            tuning: Tuning::from_config(config),
            fixity: report.plan().fixity.clone(),
        })
    }
}

/// The config `stowage serve` runs on, checked as a whole: the config's own checks, every
/// plugin verified as loading would (short of compiling), and `[server]`, every problem
/// reported at once with its line. What `serve` (at start and on reload) and `config check`
/// both call, so the check refuses exactly what serving would.
pub fn load(config: Option<&Path>, listen: Option<&str>) -> Result<(LoadedConfig, Settings), ConfigError> {
    let mut settings = None;
    let loaded = LoadedConfig::load_with(config, |loaded, report| settings = check(loaded, listen, true, report))?;
    match settings {
        Some(settings) => Ok((loaded, settings)),
        // No settings means a problem was reported, and then `load_with` failed: said as an
        // error rather than assumed.
        None => Err(ConfigError {
            origin: loaded.source,
            problems: vec![stowage_runtime::config::Problem {
                at: None,
                message: "[server] could not be resolved".into(),
            }],
        }),
    }
}

/// What [`load`] checks beyond the config's own checks: every plugin, and `[server]` when
/// `serving` (`config check` skips it for a config without a `[server]` table, which only the
/// CLI uses). The settings, when serving and nothing was refused.
pub fn check(loaded: &LoadedConfig, listen: Option<&str>, serving: bool, report: &mut Report<'_>) -> Option<Settings> {
    stowage_runtime::plugin::check_plugins(loaded, report);
    if serving { Settings::check(loaded, listen, report) } else { None }
}

/// One `api_keys` entry: `"KEY"`, `{ env = "NAME" }` (unnamed: named `api_keys[I]`), or
/// `{ name = "web-1", key = ... }`.
fn named_key(value: &toml::Value, i: usize) -> Result<(String, String), SettingsError> {
    let at = format!("api_keys[{i}]");
    match value {
        toml::Value::Table(t) if t.contains_key("name") || t.contains_key("key") => {
            if let Some(other) = t.keys().find(|k| *k != "name" && *k != "key") {
                return Err(SettingsError::Key(format!(
                    "{at}: unknown field `{other}` (a named key is {{ name = \"...\", key = ... }})"
                )));
            }
            let name = match t.get("name") {
                Some(toml::Value::String(n))
                    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
                {
                    n.clone()
                }
                Some(_) => {
                    return Err(SettingsError::Key(format!("{at}.name must be letters, digits, `-`, `_` or `.`")));
                }
                None => return Err(SettingsError::Key(format!("{at}: a named key needs `name`"))),
            };
            let key = t.get("key").ok_or_else(|| SettingsError::Key(format!("{at}: a named key needs `key`")))?;
            Ok((name, resolve_value(key, &format!("{at}.key")).map_err(SettingsError::Key)?))
        }
        other => Ok((at.clone(), resolve_value(other, &at).map_err(SettingsError::Key)?)),
    }
}

/// `[server] url_secret`, resolved and checked; none if not configured.
pub fn url_secret(config: &ServerConfig) -> Result<Option<Arc<[u8]>>, SettingsError> {
    let Some(value) = &config.url_secret else { return Ok(None) };
    let secret = resolve_value(value.get_ref(), "url_secret").map_err(SettingsError::Key)?;
    if secret.len() < MIN_KEY_LEN {
        return Err(SettingsError::ShortUrlSecret);
    }
    Ok(Some(Arc::from(secret.into_bytes())))
}

impl Settings {
    /// The base URL clients reach the host at: `public_url`, else the listen address.
    pub fn base_url(config: &ServerConfig) -> String {
        match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let scheme = if config.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", config.listen.as_ref().map_or("127.0.0.1:8443", |l| l.get_ref().as_str()))
            }
        }
    }
}
