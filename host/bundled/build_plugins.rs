// Shared by host/bundled/build.rs and tests/build.rs (via `include!`): runs a nested cargo
// that builds plugin crates for wasm32-wasip2 with the workspace's `plugin` profile, in its own
// target dir (`<target>/plugins`) so it never waits on the outer build's lock.

/// Where the nested build puts its output.
fn plugin_target_dir(workspace: &Path) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    base.join("plugins")
}

/// Builds `crates` (crate name, .wasm file stem) for wasm32-wasip2.
fn build(workspace: &Path, target_dir: &Path, crates: &[(&str, &str)]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .arg("build")
        .arg("--target=wasm32-wasip2")
        .arg("--profile=plugin")
        .arg("--locked")
        .arg("--target-dir")
        .arg(target_dir);
    for (name, _) in crates {
        cmd.arg("-p").arg(name);
    }
    // Flags meant for the host build must not leak into the guest build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    let status = match cmd.status() {
        Ok(status) => status,
        Err(e) => panic!("cannot run cargo to build the plugins: {e}"),
    };
    if !status.success() {
        panic!(
            "building the plugin components failed (see above). If the error says the \
             wasm32-wasip2 target is missing, run: rustup target add wasm32-wasip2"
        );
    }
}

/// The directory the built `.wasm` files land in.
fn built_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("wasm32-wasip2").join("plugin")
}
