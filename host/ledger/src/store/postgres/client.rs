//! Reaching the database: where it is and over what TLS (`Target`), the runtime that drives
//! a connection and bounds every call (`Waiter`), prepared statements (`Statements`), and
//! errors in words.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::{Client, Config, Statement};

use crate::LedgerError;

/// Where the database is and how to reach it.
#[derive(Clone)]
pub(crate) struct Target {
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// Every call's bound, and the lock wait.
    pub(crate) timeout: Duration,
}

impl Target {
    /// Reads a `postgres://` URL (or a `key=value` string); `ca_file` adds a CA to trust.
    pub(crate) fn new(url: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Target, LedgerError> {
        // The URL may hold a password: its parse error is named, never quoted.
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            LedgerError::Postgres(format!("the ledger's database URL is not valid ({})", first_line(&e)))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(30)).tcp_user_timeout(timeout);
        if config.get_application_name().is_none() {
            config.application_name("stowage");
        }
        // TLS unless the URL says otherwise (tokio-postgres would fall back to plain text when
        // the server declines, which a machine in the middle can make it do).
        if !url.contains("sslmode") {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        // A transaction this client gives up on (a host frozen or cut off mid-commit) holds the
        // writers' lock: the server ends it after a while, whatever the client does.
        let idle = format!("-c idle_in_transaction_session_timeout={}", (timeout.as_millis() * 3).max(1000));
        let options = match config.get_options() {
            Some(given) => format!("{given} {idle}"),
            None => idle,
        };
        config.options(&options);
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(file) = ca_file {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| LedgerError::Postgres(format!("the ledger's CA file {}: {e}", file.display())))?;
            if certs.is_empty() {
                return Err(LedgerError::Postgres(format!(
                    "the ledger's CA file {} holds no certificate",
                    file.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| LedgerError::Postgres(format!("the ledger's CA file {}: {e}", file.display())))?;
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LedgerError::Postgres(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Target { config, tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls), timeout })
    }
}

/// The first line of an error and its causes (a tokio-postgres error's own text is often
/// only "db error" or "error connecting to server").
pub(crate) fn first_line(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn pg(e: tokio_postgres::Error) -> LedgerError {
    LedgerError::Postgres(first_line(&e))
}

/// Which thread drives a connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// A worker thread of the connection's own: callable from any thread, inside an async
    /// runtime or not (each call hops to that worker and back).
    Worker,
    /// The calling thread itself, which must never be an async runtime's: the committer's
    /// thread. A round trip is then one socket write and one wake-up, as in a plain client.
    Caller,
}

/// The ledger's own runtime: shut down in the background when dropped (a runtime dropped
/// inside another one's worker would panic if it waited).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs the client's futures to completion, within the bound.
#[derive(Clone)]
pub(crate) struct Waiter {
    runtime: std::sync::Arc<Runtime>,
    pub(crate) driver: Driver,
    pub(crate) timeout: Duration,
}

impl Waiter {
    pub(crate) fn new(driver: Driver, timeout: Duration) -> Result<Waiter, LedgerError> {
        let built = match driver {
            Driver::Worker => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("stowage-ledger-pg")
                .enable_all()
                .build(),
            Driver::Caller => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        };
        let runtime = built.map_err(|e| LedgerError::Postgres(format!("cannot start the ledger's client: {e}")))?;
        Ok(Waiter { runtime: std::sync::Arc::new(Runtime(Some(runtime))), driver, timeout })
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, LedgerError> {
        self.runtime.0.as_ref().ok_or_else(|| LedgerError::Postgres("the ledger's client has stopped".into()))
    }

    fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) -> Result<(), LedgerError> {
        self.runtime()?.spawn(f);
        Ok(())
    }

    pub(crate) fn wait<T>(&self, f: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, LedgerError> {
        let rt = self.runtime()?;
        let answered = match self.driver {
            // The connection's task runs on this thread while it waits.
            // (The timer is made inside, where the runtime is current.)
            Driver::Caller => rt.block_on(async { tokio::time::timeout(self.timeout, f).await }),
            Driver::Worker => {
                // The sockets and timers belong to the runtime's worker, which drives them;
                // this thread only polls and waits (it may be a worker of another runtime:
                // entering a handle nests, only a runtime's `block_on` would not).
                let _in = rt.enter();
                futures::executor::block_on(tokio::time::timeout(self.timeout, f))
            }
        };
        match answered {
            Ok(result) => result.map_err(pg),
            Err(_) => Err(LedgerError::Postgres(format!(
                "the ledger's database did not answer within {} s",
                self.timeout.as_secs_f32()
            ))),
        }
    }
}

/// Statements prepared on the current connection, by their text: each is parsed once per
/// connection, so a query is one round trip, not two.
#[derive(Default)]
pub(crate) struct Statements(std::sync::Mutex<std::collections::HashMap<&'static str, Statement>>);

impl Statements {
    /// The prepared `sql`, preparing it with `prepare` the first time.
    pub(crate) fn get<F: Future<Output = Result<Statement, tokio_postgres::Error>>>(
        &self,
        waiter: &Waiter,
        sql: &'static str,
        prepare: impl FnOnce() -> F,
    ) -> Result<Statement, LedgerError> {
        if let Some(statement) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(sql) {
            return Ok(statement.clone());
        }
        let statement = waiter.wait(prepare())?;
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(sql, statement.clone());
        Ok(statement)
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Connects; the connection's task runs on the waiter's runtime.
pub(crate) fn connect(target: &Target, waiter: &Waiter) -> Result<Client, LedgerError> {
    let (client, connection) = waiter
        .wait(target.config.connect(target.tls.clone()))
        .map_err(|e| LedgerError::Postgres(format!("cannot reach the ledger's database: {e}")))?;
    waiter.spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %first_line(&e), "the ledger's database connection ended");
        }
    })?;
    Ok(client)
}
