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

/// Makes sure the wasm32-wasip2 standard library is installed for the toolchain this build
/// runs with. rustup adds `rust-toolchain.toml`'s `targets` only when it installs the
/// toolchain itself; a toolchain that was already there (the usual fresh machine) lacks it, so
/// the build adds it with rustup. Both build scripts may get here at once: a lock file
/// serialises them.
fn ensure_target(workspace: &Path, target_dir: &Path) {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let installed = || {
        Command::new(&rustc)
            .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
            .is_some_and(|dir| has_std(&dir))
    };
    if installed() {
        return;
    }
    if let Err(e) = std::fs::create_dir_all(target_dir) {
        panic!("cannot create {}: {e}", target_dir.display());
    }
    let lock_path = target_dir.join(".target-install.lock");
    let lock = match std::fs::File::create(&lock_path) {
        Ok(file) => file,
        Err(e) => panic!("cannot create {}: {e}", lock_path.display()),
    };
    if let Err(e) = lock.lock() {
        panic!("cannot lock {}: {e}", lock_path.display());
    }
    if installed() {
        return;
    }
    println!("cargo:warning=installing the wasm32-wasip2 target with rustup (once per toolchain)");
    let status = Command::new("rustup")
        .current_dir(workspace)
        .args(["target", "add", "wasm32-wasip2"])
        .status();
    match status {
        Ok(status) if status.success() && installed() => {}
        Ok(_) => panic!(
            "`rustup target add wasm32-wasip2` did not install the target (see above); \
             the plugin components cannot be built without it"
        ),
        Err(e) => panic!(
            "the wasm32-wasip2 target is not installed and rustup could not be run ({e}); \
             install the target for this toolchain, e.g. rustup target add wasm32-wasip2"
        ),
    }
}

/// Whether a target libdir holds a standard library (`libstd-<hash>.rlib`).
fn has_std(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    })
}

/// Builds `crates` (crate name, .wasm file stem) for wasm32-wasip2.
fn build(workspace: &Path, target_dir: &Path, crates: &[(&str, &str)]) {
    ensure_target(workspace, target_dir);
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
            "building the plugin components for wasm32-wasip2 failed (see above)"
        );
    }
}

/// The directory the built `.wasm` files land in.
fn built_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("wasm32-wasip2").join("plugin")
}
