//! `stowage plugin new` (a plugin project that builds and passes `stowage plugin test` as
//! generated) and `stowage plugin wit` (the WIT package plugins are built against). The WIT
//! and the templates are compiled into the binary, so they always match this host.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The WIT package, as (path inside the package directory, text).
const WIT: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../../wit/types.wit")),
    ("store.wit", include_str!("../../../../wit/store.wit")),
    ("resumable.wit", include_str!("../../../../wit/resumable.wit")),
    ("policy.wit", include_str!("../../../../wit/policy.wit")),
    ("host.wit", include_str!("../../../../wit/host.wit")),
    ("worlds.wit", include_str!("../../../../wit/worlds.wit")),
    ("deps/io.wit", include_str!("../../../../wit/deps/io.wit")),
];

/// Project files per (kind, language), as (path, text with `{{name}}` and `{{stem}}`).
const RUST_DRIVER: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/rust-driver/Cargo.toml")),
    ("src/lib.rs", include_str!("../../templates/rust-driver/src/lib.rs")),
    ("README.md", include_str!("../../templates/rust-driver/README.md")),
    (".gitignore", "/target\n*.key\n"),
];
const RUST_POLICY: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/rust-policy/Cargo.toml")),
    ("src/lib.rs", include_str!("../../templates/rust-policy/src/lib.rs")),
    ("README.md", include_str!("../../templates/rust-policy/README.md")),
    (".gitignore", "/target\n*.key\n"),
];
const PYTHON_POLICY: &[(&str, &str)] = &[
    ("app.py", include_str!("../../templates/python-policy/app.py")),
    ("pyproject.toml", include_str!("../../templates/python-policy/pyproject.toml")),
    ("README.md", include_str!("../../templates/python-policy/README.md")),
    (".gitignore", "*.wasm\n*.key\n__pycache__/\n"),
];

/// Names cargo refuses for a package (keywords and the standard crates), `-` read as `_`.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "gen",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
];

/// What kind of plugin.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// A storage driver (exports `store`).
    Driver,
    /// A policy (exports `policy-hooks`).
    Policy,
}

/// The language of the project.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen, built for wasm32-wasip2.
    Rust,
    /// Python with componentize-py (policies).
    Python,
}

/// `plugin new` arguments.
#[derive(clap::Args)]
pub struct NewArgs {
    /// Driver or policy.
    kind: Kind,
    /// The project's name: lowercase letters, digits and `-`; also its directory.
    name: String,
    /// The language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create the project directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    parent: PathBuf,
}

/// `plugin wit` arguments.
#[derive(clap::Args)]
pub struct WitArgs {
    /// The directory to write the package into (created; existing .wit files replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Writes a new project.
pub fn new(args: &NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!("plugin name `{}` must start with a lowercase letter and use only a-z, 0-9 and `-`", name.escape_debug());
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        bail!("plugin name `{name}` is a Rust keyword or standard crate name; cargo refuses it as a package name");
    }
    let files = match (args.kind, args.lang) {
        (Kind::Driver, Lang::Rust) => RUST_DRIVER,
        (Kind::Policy, Lang::Rust) => RUST_POLICY,
        (Kind::Policy, Lang::Python) => PYTHON_POLICY,
        (Kind::Driver, Lang::Python) => bail!(
            "Python drivers are not offered: a driver moves every object byte through its code, and \
             an interpreted driver would be far slower than the disk. Write drivers in Rust \
             (`--lang rust`); Python suits policies"
        ),
    };
    let dir = args.parent.join(name);
    std::fs::create_dir_all(&args.parent).with_context(|| format!("cannot create {}", args.parent.display()))?;
    // Creating the directory is the existence check: nothing of an existing one is touched.
    if let Err(e) = std::fs::create_dir(&dir) {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            bail!("{} already exists: choose another name or remove it", dir.display());
        }
        return Err(e).with_context(|| format!("cannot create {}", dir.display()));
    }
    let stem = name.replace('-', "_");
    for (path, text) in files {
        let text = text.replace("{{name}}", name).replace("{{stem}}", &stem);
        write(&dir.join(path), &text)?;
    }
    write_wit(&dir.join("wit"))?;
    println!("created {}", dir.display());
    println!("next: see {} for build, test, sign and wiring commands", dir.join("README.md").display());
    Ok(())
}

/// Writes the WIT package.
pub fn wit(args: &WitArgs) -> anyhow::Result<()> {
    write_wit(&args.out)?;
    println!("wrote the stowage:storage WIT package to {}", args.out.display());
    Ok(())
}

fn write_wit(dir: &Path) -> anyhow::Result<()> {
    for (path, text) in WIT {
        write(&dir.join(path), text)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
