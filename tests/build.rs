//! Builds the test-only fixture plugins (tests/fixtures/*) for wasm32-wasip2 and tells the
//! test support library where they are.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("../host/bundled/build_plugins.rs");

/// (crate name, file stem of its .wasm)
const FIXTURES: &[(&str, &str)] = &[
    ("stowage-fixture-misbehaving-driver", "stowage_fixture_misbehaving_driver"),
    ("stowage-fixture-test-policy", "stowage_fixture_test_policy"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest_dir.join("..");
    for watched in ["tests/fixtures", "plugins/sdk", "wit", "host/path"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }
    let target_dir = plugin_target_dir(&workspace);
    build(&workspace, &target_dir, FIXTURES);
    println!("cargo:rustc-env=STOWAGE_FIXTURE_DIR={}", built_dir(&target_dir).display());
}
