//! Builds the bundled plugin components for wasm32-wasip2 with a nested cargo, so that one
//! `cargo build` at the root yields a `stowage` binary with its plugins inside.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("build_plugins.rs");

/// (crate name, file stem of its .wasm)
const BUNDLED: &[(&str, &str)] = &[
    ("stowage-local-fs", "stowage_local_fs"),
    ("stowage-role-policy", "stowage_role_policy"),
    ("stowage-phi-tracking", "stowage_phi_tracking"),
    ("stowage-s3", "stowage_s3"),
    ("stowage-remote", "stowage_remote"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest_dir.join("../..");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    for watched in ["plugins", "wit", "host/path", "host/api", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }

    let target_dir = plugin_target_dir(&workspace);
    build(&workspace, &target_dir, BUNDLED);

    let built = built_dir(&target_dir);
    let mut consts = String::new();
    for (name, stem) in BUNDLED {
        let from = built.join(format!("{stem}.wasm"));
        let to = out_dir.join(format!("{stem}.wasm"));
        if let Err(e) = std::fs::copy(&from, &to) {
            panic!("cannot copy {} to {}: {e}", from.display(), to.display());
        }
        consts.push_str(&format!(
            "/// The `{name}` component.\npub static {}: &[u8] = include_bytes!({:?});\n",
            stem.to_uppercase(),
            to.display().to_string()
        ));
    }
    if let Err(e) = std::fs::write(out_dir.join("bundled.rs"), consts) {
        panic!("cannot write bundled.rs: {e}");
    }
}
