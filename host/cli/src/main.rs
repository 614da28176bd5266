//! `stowage`: a storage host for sensitive research data. See the README for a quickstart.

mod cmd;
mod exit;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Stowage: one storage contract, drivers and policies as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "stowage", version, about, long_about = None)]
struct Cli {
    /// Config file. Without it: ./stowage.toml if present, else the embedded default
    /// (role testing, one local-fs disk under ./stowage-data). For `plugin test`: the
    /// plugin's own config table.
    #[arg(long, global = true, env = "STOWAGE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Who is asking (recorded in the PHI ledger).
    #[arg(long, global = true, env = "STOWAGE_ACTOR")]
    actor: Option<String>,

    /// The cohort the request is for (request metadata `cohort`, recorded in the ledger).
    #[arg(long, global = true)]
    cohort: Option<String>,

    /// Why the data is accessed (recorded in the PHI ledger; request metadata `purpose`).
    #[arg(long, global = true, env = "STOWAGE_PURPOSE")]
    purpose: Option<String>,

    /// Request metadata KEY=VALUE (repeatable; seen by policies, e.g. `file_type=patient`).
    #[arg(long = "req-meta", global = true, value_name = "KEY=VALUE", value_parser = cmd::key_value)]
    req_meta: Vec<(String, String)>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store FILE (or stdin with `-`) at ADDR, e.g. `stowage put default:hello.txt hello.txt`.
    Put(cmd::put::Args),
    /// Write the object at ADDR to stdout, or to a file with -o.
    Get(cmd::get::Args),
    /// List the objects under ADDR (`NAME:` or `NAME:prefix`), one path per line.
    Ls(cmd::ls::Args),
    /// Remove the object at ADDR.
    Rm(cmd::rm::Args),
    /// Copy SRC to DST (any two addresses, e.g. between disks), streamed and verified by
    /// sha256; both sides are recorded.
    Cp(cmd::copy::Args),
    /// Move SRC to DST: a verified copy, then the source is deleted (kept if the copy fails).
    Mv(cmd::copy::Args),
    /// Show the object's size, sha256, content type and metadata.
    Stat(cmd::stat::Args),
    /// Check every disk (write, read back, delete a probe object) and the PHI ledger (records,
    /// verifies, last checkpoint); exit non-zero if one fails.
    Health(cmd::health::Args),
    /// Check stored bytes: read every object under NAME:[prefix], recompute its sha256 and
    /// compare it with the driver's and the ledger's records; report corrupted, missing and
    /// unrecorded objects (exit 11 if any) and record the run in the ledger.
    Fsck(cmd::fsck::Args),
    /// Configuration tools.
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// Plugin signing keys, signatures and inspection.
    #[command(subcommand)]
    Plugin(cmd::plugin::Command),
    /// The PHI ledger: verify, checkpoints and proofs, show, export and report, seal a break.
    #[command(subcommand)]
    Ledger(cmd::ledger::Command),
    /// Delete overdue temporary files through the normal pipeline (so each deletion is
    /// recorded), and remove the temp objects of writes that never finished.
    Cleanup,
    /// Serve the storage pipeline over HTTP(S): the services host's API (see [server] in the
    /// config).
    Serve(cmd::serve::Args),
    /// Ask the running `serve` of this config to reload its config and plugins (SIGHUP) without
    /// downtime, and wait for its answer; a config it would refuse is reported and not sent.
    Reload(cmd::reload::Args),
    /// Move writes queued on fallback disks (while their own disk was away) back to their
    /// disks, verified by sha256; `sync status` lists what waits. `serve` does this by itself.
    Sync(cmd::sync::Args),
    /// Print a URL that serves the object until it expires (the driver's, or one signed by
    /// this host's `stowage serve`).
    Url(cmd::url::Args),
    /// Print a shell completion script: `stowage completions bash > /etc/bash_completion.d/stowage`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these commands: `stowage man | man -l -`.
    Man,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // `plugin test --config TABLE.toml` names the plugin's config table; STOWAGE_CONFIG (a
    // host config) must not be taken for one.
    let config_flag =
        (matches.value_source("config") == Some(ValueSource::CommandLine)).then(|| cli.config.clone()).flatten();
    init_tracing();
    let mut req_meta = cli.req_meta;
    if let Some(cohort) = cli.cohort {
        req_meta.push(("cohort".into(), cohort));
    }
    if let Some(purpose) = cli.purpose {
        req_meta.push(("purpose".into(), purpose));
    }
    cmd::set_identity(cli.actor, req_meta);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stowage: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let config = cli.config.as_deref();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Put(args) => cmd::put::run(config, args).await,
            Command::Get(args) => cmd::get::run(config, args).await,
            Command::Ls(args) => cmd::ls::run(config, args).await,
            Command::Rm(args) => cmd::rm::run(config, args).await,
            Command::Cp(args) => cmd::copy::run(config, args, false).await,
            Command::Mv(args) => cmd::copy::run(config, args, true).await,
            Command::Stat(args) => cmd::stat::run(config, args).await,
            Command::Health(args) => cmd::health::run(config, args).await,
            Command::Fsck(args) => cmd::fsck::run(config, args).await,
            Command::Config(c) => cmd::config::run(config, c),
            Command::Plugin(c) => cmd::plugin::run(c, config_flag.as_deref()).await,
            Command::Ledger(c) => cmd::ledger::run(config, c).await,
            Command::Cleanup => cmd::ledger::cleanup(config).await,
            Command::Serve(args) => cmd::serve::run(config, args).await,
            Command::Reload(args) => cmd::reload::run(config, args),
            Command::Url(args) => cmd::url::run(config, args).await,
            Command::Sync(args) => cmd::sync::run(config, args).await,
            Command::Completions { shell } => {
                // Into a buffer first: the generator panics on a write error (a closed pipe).
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "stowage", &mut script);
                std::io::Write::write_all(&mut std::io::stdout(), &script).map_err(Into::into)
            }
            Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(Into::into),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stowage: {e:#}");
            ExitCode::from(exit::code_for(&e))
        }
    }
}

/// Logs go to stderr; `STOWAGE_LOG` (or `RUST_LOG`) sets the filter, default `warn`.
/// Logs on stderr: `STOWAGE_LOG` (or `RUST_LOG`) filters them; `STOWAGE_LOG_FORMAT=json` makes
/// each one a JSON object, with the fields of the spans it happened in (a request's `id`).
fn init_tracing() {
    let filter = std::env::var("STOWAGE_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false);
    if std::env::var("STOWAGE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().with_current_span(true).with_span_list(false).init();
    } else {
        logs.init();
    }
}
