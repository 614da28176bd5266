//! `stowage plugin test`: the black-box conformance kit. Loads any component (no signature
//! needed: authors test before they sign), finds its world, and runs the driver conformance
//! suite or the policy contract checks against it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use stowage_conformance::{Outcome, Report};
use stowage_runtime::config::{flatten, resolve_plugin};
use stowage_runtime::ledger::Ledger;
use stowage_runtime::plugin::inspect::World;
use stowage_runtime::plugin::{PluginLoader, TrustPolicy, cache};
use stowage_runtime::policy::Policy;
use stowage_runtime::{Disk, DriverGrants, Limits, PluginEngine, PolicyGrants};

/// `plugin test` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The component: a .wasm file, or a bundled plugin's name (e.g. `local-fs`).
    plugin: String,
    /// A directory granted to a driver (preopened as `/`). Default: a fresh temporary
    /// directory, removed afterwards.
    #[arg(long, value_name = "DIR")]
    grant_dir: Option<PathBuf>,
    /// The one HTTP(S) origin a driver may reach (e.g. an S3 server).
    #[arg(long, value_name = "URL")]
    grant_endpoint: Option<String>,
    /// The environment variable holding an API key the host adds to every request to the
    /// endpoint (as `grant.api_key = { env = "NAME" }`).
    #[arg(long, value_name = "NAME", requires = "grant_endpoint")]
    grant_api_key_env: Option<String>,
    /// A PEM file of extra certificate authorities to trust for the endpoint.
    #[arg(long, value_name = "FILE", requires = "grant_endpoint")]
    grant_ca_file: Option<PathBuf>,
    /// Development only: allow the API key over a plain http:// endpoint (as `[server]
    /// dev_mode = true` does in config).
    #[arg(long)]
    dev_mode: bool,
    /// Most linear memory the plugin may use, in MiB, as `limits.memory_mib` in config.
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    memory_mib: u64,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

/// The way out to `url` the grant flags describe, as config's `grant` would make it.
fn outbound(
    url: &str,
    api_key_env: Option<&str>,
    ca_file: Option<&Path>,
    dev_mode: bool,
) -> anyhow::Result<stowage_runtime::http::Outbound> {
    let endpoint = stowage_runtime::http::Endpoint::parse(url).map_err(anyhow::Error::msg)?;
    if api_key_env.is_some() && !endpoint.is_https() && !dev_mode {
        anyhow::bail!(
            "--grant-api-key-env: the key would travel over plain HTTP to {endpoint}; use an https:// endpoint (or --dev-mode, development only)"
        );
    }
    let key = match api_key_env {
        Some(var) => Some(
            std::env::var(var)
                .map_err(|_| anyhow::anyhow!("--grant-api-key-env: environment variable `{var}` is not set"))?,
        ),
        None => None,
    };
    stowage_runtime::http::Outbound::new(endpoint, key.as_deref(), ca_file).map_err(anyhow::Error::msg)
}

/// Some checks failed (exit code 1); the report has been printed.
#[derive(Debug, thiserror::Error)]
#[error("{failed} conformance check(s) failed")]
pub struct ChecksFailed {
    failed: usize,
}

/// The plugin could not be tested at all: unreadable, not a plugin, bad arguments (exit code
/// 5, so a script can tell it from failed checks).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct CannotTest(anyhow::Error);

/// Runs the suite. `table` is the plugin's config table (a TOML file of `key = value`, the
/// same as the `config` table of a disk or policy in stowage.toml).
pub async fn run(args: Args, table: Option<&Path>) -> anyhow::Result<()> {
    let report = prepare_and_run(&args, table).await.map_err(CannotTest)?;
    match report.failed() {
        0 => Ok(()),
        failed => Err(ChecksFailed { failed }.into()),
    }
}

async fn prepare_and_run(args: &Args, table: Option<&Path>) -> anyhow::Result<Report> {
    let source = resolve_plugin(&args.plugin, Path::new(".")).map_err(anyhow::Error::msg)?;
    let config = match table {
        Some(path) => read_table(path)?,
        None => Vec::new(),
    };
    let engine = PluginEngine::new().map_err(|e| anyhow::anyhow!("{e}"))?;
    let loader = PluginLoader::new(&engine, TrustPolicy::default(), cache::default_dir().as_deref());
    let (loaded, world) = loader.load_unverified(&source).with_context(|| source.to_string())?;
    let name = source.name();
    let scratch = tempfile::tempdir().context("cannot make a temporary directory")?;
    // At most 4096 MiB (the argument's range): fits usize on every supported host.
    let limits = Limits { memory_bytes: usize::try_from(args.memory_mib << 20)?, ..Limits::default() };
    let report = match world {
        World::Driver => {
            let dir = args.grant_dir.clone().unwrap_or_else(|| scratch.path().join("grant"));
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let outbound = match &args.grant_endpoint {
                Some(url) => Some(std::sync::Arc::new(outbound(
                    url,
                    args.grant_api_key_env.as_deref(),
                    args.grant_ca_file.as_deref(),
                    args.dev_mode,
                )?)),
                None => None,
            };
            let grants = DriverGrants { dir: Some(dir), config, outbound };
            let disk =
                Disk::from_component(&engine, "under-test", &loaded.component, grants, limits)?.with_driver_name(&name);
            // A fresh scope per run: a granted directory or bucket may hold earlier runs' data.
            let scope = format!("stowage-conformance-{}", stowage_runtime::Request::new().request_id);
            stowage_conformance::run(&disk, &scope).await
        }
        World::Policy => {
            if args.grant_dir.is_some() || args.grant_endpoint.is_some() {
                anyhow::bail!(
                    "{}: --grant-dir and --grant-endpoint are for drivers; a policy gets neither",
                    args.plugin
                );
            }
            let ledger = Ledger::open(&scratch.path().join("ledger.sqlite"), Default::default())?;
            let ledger = std::sync::Arc::new(ledger);
            let grants = PolicyGrants { config, ledger: Some(ledger.clone()) };
            let policy = Policy::from_component(&engine, &name, &loaded.component, grants, limits)?;
            stowage_conformance::policy::run(&policy, &ledger).await
        }
    };
    print(args, world, &loaded.sha256, &report)?;
    Ok(report)
}

fn read_table(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not a TOML table", path.display()))?;
    // A host config would hand the plugin under test every secret it references.
    if table.contains_key("role") || table.contains_key("disks") || table.contains_key("trust") {
        anyhow::bail!(
            "{} looks like a host config (it has `role`, `disks` or `trust`): `plugin test --config` takes the plugin's own config table, e.g. `bucket = \"x\"`",
            path.display()
        );
    }
    flatten(&table, &path.display().to_string()).map_err(anyhow::Error::msg)
}

fn print(args: &Args, world: World, sha256: &str, report: &Report) -> anyhow::Result<()> {
    if !args.json {
        println!("testing {} ({world}, sha256 {sha256})", args.plugin);
        for line in report.lines() {
            println!("{line}");
        }
        return Ok(());
    }
    let checks: Vec<serde_json::Value> = report
        .results
        .iter()
        .map(|(name, outcome)| {
            let (status, reason) = match outcome {
                Outcome::Pass => ("pass", None),
                Outcome::Fail(why) => ("fail", Some(why)),
                Outcome::Skip(why) => ("skip", Some(why)),
            };
            serde_json::json!({ "check": name, "status": status, "reason": reason })
        })
        .collect();
    let out = serde_json::json!({
        "plugin": args.plugin,
        "world": world.to_string(),
        "sha256": sha256,
        "checks": checks,
        "passed": report.passed(),
        "failed": report.failed(),
        "skipped": report.skipped(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
