//! `stowage plugin keygen|sign|verify|inspect|test|new|wit`: keys, signatures, what a plugin
//! declares, the conformance kit and scaffolding.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use stowage_runtime::plugin::inspect::{World, inspect};
use stowage_runtime::plugin::{keys, signature};
use stowage_runtime::{Disk, DriverGrants, Limits, PluginEngine};

/// Plugin subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a signing key pair: NAME.key (secret, mode 0600) and NAME.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, value_name = "NAME")]
        out: PathBuf,
    },
    /// Sign FILE.wasm in place (adds a `signature` section), or write FILE.wasm.sig.
    Sign {
        /// The secret key file.
        #[arg(long, value_name = "NAME.key")]
        key: PathBuf,
        /// Write a detached FILE.wasm.sig instead of changing the file.
        #[arg(long)]
        detached: bool,
        /// The component.
        file: PathBuf,
    },
    /// Check FILE.wasm's signature against trusted public keys; prints the signer's key id.
    Verify {
        /// A trusted public key file or `ed25519:<hex>` (repeatable).
        #[arg(long = "trust", value_name = "NAME.pub", required = true)]
        trust: Vec<String>,
        /// The component.
        file: PathBuf,
    },
    /// Show a plugin's world, imports, exports, sha256 and signatures (read from the file,
    /// nothing is run).
    Inspect {
        /// Also run the driver, sandboxed with no grants at all, to ask its declared capabilities.
        #[arg(long)]
        capabilities: bool,
        /// The component.
        file: PathBuf,
    },
    /// Run the conformance suite (drivers) or the policy contract checks (policies) against a
    /// component: one PASS/FAIL/SKIP line per check, then a summary; exits 1 on any failure.
    /// `--config TABLE.toml` gives the plugin its config values (`key = value`, like the
    /// `config` table of a disk or policy).
    Test(super::plugin_test::Args),
    /// Write a new plugin project that builds and passes `stowage plugin test` as generated.
    New(super::plugin_new::NewArgs),
    /// Write the stowage WIT package (the contract plugins are built against) into a directory.
    Wit(super::plugin_new::WitArgs),
}

/// A signature that did not verify (exit code 4, like a denial).
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct VerifyFailed {
    file: String,
    reason: signature::SignatureError,
}

/// Runs a plugin subcommand. `table` is `--config` given on the command line (for `test`, the
/// plugin's config table).
pub async fn run(command: Command, table: Option<&Path>) -> anyhow::Result<()> {
    match command {
        Command::Test(args) => super::plugin_test::run(args, table).await,
        Command::New(args) => super::plugin_new::new(&args),
        Command::Wit(args) => super::plugin_new::wit(&args),
        Command::Keygen { out } => {
            let key = keys::generate()?;
            let id = keys::write_pair(&out, &key)?;
            println!(
                "wrote {} (secret: keep it safe) and {}",
                out.with_extension("key").display(),
                out.with_extension("pub").display()
            );
            println!("key id {id}");
            Ok(())
        }
        Command::Sign { key, detached, file } => {
            let secret = keys::read_secret(&key)?;
            let bytes = read(&file)?;
            let id = keys::key_id(&secret.verifying_key());
            if detached {
                let sig_path = PathBuf::from(format!("{}.sig", file.display()));
                write_atomically(&sig_path, &signature::sign_detached(&bytes, &secret))?;
                println!("wrote {} (signed by key {id})", sig_path.display());
            } else {
                let signed = signature::sign(&bytes, &secret).with_context(|| file.display().to_string())?;
                write_atomically(&file, &signed)?;
                println!("signed {} with key {id}", file.display());
            }
            Ok(())
        }
        Command::Verify { trust, file } => {
            let keys = trust.iter().map(|k| keys::read_public(k, Path::new("."))).collect::<Result<Vec<_>, _>>()?;
            let bytes = read(&file)?;
            let detached = std::fs::read(format!("{}.sig", file.display())).ok();
            match signature::verify(&bytes, detached.as_deref(), &keys) {
                Ok(ids) => {
                    println!("OK: {} is signed by trusted key {}", file.display(), ids.join(", "));
                    Ok(())
                }
                Err(reason) => Err(VerifyFailed { file: file.display().to_string(), reason }.into()),
            }
        }
        Command::Inspect { capabilities, file } => inspect_file(&file, capabilities).await,
    }
}

async fn inspect_file(file: &Path, run_for_capabilities: bool) -> anyhow::Result<()> {
    let bytes = read(file)?;
    let info = inspect(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    println!("file: {}", file.display());
    println!("sha256: {}", info.sha256);
    println!("world: {}", info.world.map_or("none (not a stowage plugin)".to_string(), |w| w.to_string()));
    for i in &info.imports {
        println!("import: {i}");
    }
    for e in &info.exports {
        println!("export: {e}");
    }
    match signature::split(&bytes) {
        Ok(signed) => match signed.set {
            Some(set) => {
                for s in set.signatures {
                    println!("signature: key {} (embedded)", s.key_id);
                }
            }
            None => println!("signature: none embedded"),
        },
        Err(e) => println!("signature: {e}"),
    }
    if let Ok(sig) = std::fs::read(format!("{}.sig", file.display())) {
        match signature::parse_payload(&sig) {
            Ok(set) => set.signatures.iter().for_each(|s| println!("signature: key {} (detached)", s.key_id)),
            Err(e) => println!("signature: detached .sig unreadable: {e}"),
        }
    }
    if info.world == Some(World::Driver) && run_for_capabilities {
        // Capabilities come from the driver itself: run it with no grants at all.
        let engine = PluginEngine::new().map_err(|e| anyhow::anyhow!("{e}"))?;
        let disk = Disk::load(&engine, "inspect", &bytes, DriverGrants::default(), Limits::default())?;
        let caps = disk.capabilities().await?;
        println!("capabilities: {caps}");
    }
    Ok(())
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    // Keep the replaced file's permissions (a temp file is private by default).
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    } else {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}
