//! End-to-end tests: the real `stowage` binary and the real runtime with real plugin
//! components, real files and real processes. One test binary, a module per topic.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "end-to-end tests: a panic is how a test fails")]

/// For each named `async fn NAME(which: Which)`, a module `NAME` with one test per server
/// (`NAME::seaweedfs`, `NAME::rclone`).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use stowage_tests::s3::Which;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn seaweedfs() {
                super::$name(Which::SeaweedFs).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rclone() {
                super::$name(Which::Rclone).await
            }
        }
    )*};
}

mod audit;
mod audit_kill;
mod audit_rewrites;
mod cli;
mod cluster;
mod concurrency;
mod config;
mod conformance;
mod copy;
mod crash;
mod deploy;
mod durable_hostile;
mod durable_uploads;
mod fallback;
mod fixity;
mod hardening;
mod layout;
mod ledger_pg;
mod mirror;
mod openapi;
mod plugin_kit;
mod policies;
mod reload;
mod s3;
mod s3_digests;
mod sandbox;
mod serve;
mod serve_tls;
mod serve_uploads;
mod signing;
mod streaming;
mod tus;
mod two_hosts;
mod two_hosts_faults;

use std::path::Path;
use std::process::{Command, Output};

/// The `stowage` binary built for these tests.
pub fn stowage() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stowage"));
    cmd.env_remove("STOWAGE_CONFIG").env_remove("RUST_LOG").env_remove("STOWAGE_LOG");
    // Compiled plugins are cached here, not in the user's ~/.cache.
    cmd.env("STOWAGE_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("stowage-cache"));
    cmd
}

/// Runs `stowage ARGS` in `dir` and returns its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    stowage().current_dir(dir).args(args).output().expect("stowage runs")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
