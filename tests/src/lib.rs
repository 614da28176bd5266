//! Support for Stowage's end-to-end tests and benchmarks: fixture plugins, disks on temporary
//! directories, test data, and measuring a child process's peak memory.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test support: a failed set-up is a failed test")]

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

pub mod nginx;
pub mod postgres;
pub mod s3;

/// A free loopback port (free when this returns: a server that loses a race for it retries).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs `stowage serve` with the config file `config` in this process (on the caller's
/// runtime), listening on a free loopback port; its address once it listens.
pub async fn serve_in_process(config: &Path) -> std::net::SocketAddr {
    let (loaded, settings) = stowage_server::settings::load(Some(config), Some("127.0.0.1:0")).expect("config");
    let storage = std::sync::Arc::new(stowage_runtime::Storage::open(&loaded).await.expect("storage"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = stowage_server::serve(storage, settings, &loaded.sha256, None, move |addr, _| {
            let _ = tx.send(addr);
        })
        .await;
    });
    rx.await.expect("the host listens")
}

/// Whether this process runs as root (as CI does): servers that refuse root run as another user.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// What the benchmarks share: section selection and operation counts from the environment.
pub mod bench {
    use std::time::Duration;

    /// Small operations per measurement unless `STOWAGE_BENCH_OPS` says otherwise.
    pub const DEFAULT_SMALL_OPS: usize = 300;

    /// `STOWAGE_BENCH_OPS`, or the default.
    pub fn small_op_count() -> usize {
        std::env::var("STOWAGE_BENCH_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_SMALL_OPS)
    }

    /// Whether section `name` runs (`STOWAGE_BENCH_ONLY` unset, or naming it).
    pub fn section(name: &str) -> bool {
        std::env::var("STOWAGE_BENCH_ONLY").map_or(true, |only| only == name)
    }

    /// Operations per second.
    pub fn per_sec(n: usize, d: Duration) -> f64 {
        n as f64 / d.as_secs_f64()
    }

    /// A fresh directory for a bench's files, removed when dropped: under `STOWAGE_BENCH_DIR`,
    /// else the workspace's target dir (a real disk, not a tmpfs).
    pub fn work_dir() -> tempfile::TempDir {
        let base = std::env::var_os("STOWAGE_BENCH_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        std::fs::create_dir_all(&base).expect("bench dir");
        tempfile::tempdir_in(&base).expect("bench temp dir")
    }
}

use stowage_runtime::{Disk, DriverGrants, Limits, ObjectPath, PluginEngine, Prefix, RequestContext, Role};

/// The Python require-cohort policy (`plugins/require-cohort`), built once per process by its
/// own build script with the componentize-py that `tests/run` installs.
pub fn require_cohort_policy() -> &'static Path {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let componentize_py = std::env::var_os("STOWAGE_TEST_COMPONENTIZE_PY").unwrap_or_else(|| {
            panic!("STOWAGE_TEST_COMPONENTIZE_PY is not set: run through `tests/run` (it installs componentize-py from PyPI into target/tools)")
        });
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = workspace.join("target/plugins/python/require_cohort.wasm");
        let o = std::process::Command::new(workspace.join("plugins/require-cohort/build"))
            .arg(&out)
            .env("COMPONENTIZE_PY", componentize_py)
            .output()
            .expect("the require-cohort build script runs");
        assert!(
            o.status.success(),
            "building require-cohort failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        out
    })
}

/// The `.wasm` file of test fixture `name` (e.g. `misbehaving_driver`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("STOWAGE_FIXTURE_DIR")).join(format!("stowage_fixture_{name}.wasm"))
}

/// A disk served by the bundled local-fs driver, rooted at `root`.
pub fn local_disk(engine: &PluginEngine, name: &str, root: &Path, limits: Limits) -> Disk {
    let bytes = stowage_bundled::get("local-fs").expect("local-fs is bundled");
    let grants = DriverGrants { dir: Some(root.to_path_buf()), ..DriverGrants::default() };
    Disk::load(engine, name, bytes, grants, limits).expect("local-fs loads")
}

/// A disk served by a fixture component, with no grants.
pub fn fixture_disk(engine: &PluginEngine, name: &str, fixture_name: &str, limits: Limits) -> Disk {
    let bytes = std::fs::read(fixture(fixture_name)).expect("fixture was built");
    Disk::load(engine, name, &bytes, DriverGrants::default(), limits).expect("fixture loads")
}

/// `path` as a checked object path (what a disk's calls take); panics on a bad one.
pub fn object_path(path: &str) -> ObjectPath {
    ObjectPath::parse(path).unwrap_or_else(|e| panic!("`{path}` is not a valid object path: {e}"))
}

/// `prefix` as a checked listing prefix; panics on a bad one.
pub fn list_prefix(prefix: &str) -> Prefix {
    Prefix::parse(prefix).unwrap_or_else(|e| panic!("`{prefix}` is not a valid listing prefix: {e}"))
}

/// A request context for tests.
pub fn ctx(disk: &Disk) -> RequestContext {
    RequestContext {
        role: Role::Testing,
        class: None,
        disk: disk.name().to_string(),
        driver: "test".into(),
        actor: Some("test".into()),
        authenticated_as: None,
        request_id: "test".into(),
        metadata: Vec::new(),
    }
}

/// A 1 MiB block whose first 8 bytes are `index`, so blocks of a large file differ.
pub fn block(index: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8 ^ (index as u8)).collect();
    b[..8].copy_from_slice(&index.to_le_bytes());
    b
}

/// Writes a file of `mib` MiB made of [`block`]s and returns its sha256.
pub fn write_big_file(path: &Path, mib: u64) -> String {
    use sha2::Digest;
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create big file"));
    let mut h = sha2::Sha256::new();
    for i in 0..mib {
        let b = block(i);
        h.update(&b);
        f.write_all(&b).expect("write big file");
    }
    f.flush().expect("flush big file");
    hex::encode(h.finalize())
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).expect("open file to hash");
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).expect("hash file");
    hex::encode(h.finalize())
}

/// Runs `cmd` and returns its exit status and peak resident memory in bytes.
///
/// A child spawned straight from this (large, multi-threaded) test process would inherit the
/// test process's memory high-water mark through `vfork` + `exec`, so the command runs under a
/// small Python launcher instead: it forks, execs the command, and reports the kernel's
/// accounting of that one grandchild (`wait4`'s `ru_maxrss`).
pub fn run_with_peak_rss(cmd: &std::process::Command) -> (ExitStatus, u64) {
    const LAUNCHER: &str = "import os, sys\n\
pid = os.fork()\n\
if pid == 0:\n    os.execvp(sys.argv[2], sys.argv[2:])\n\
_, status, usage = os.wait4(pid, 0)\n\
open(sys.argv[1], 'w').write(str(usage.ru_maxrss * 1024))\n\
sys.exit(os.waitstatus_to_exitcode(status) % 256)\n";
    let report = tempfile::NamedTempFile::new().expect("rss report file");
    let mut launcher = std::process::Command::new("python3");
    launcher.arg("-c").arg(LAUNCHER).arg(report.path()).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => launcher.env(k, v),
            None => launcher.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        launcher.current_dir(dir);
    }
    let status = launcher.stdout(std::process::Stdio::null()).status().expect("python3 runs the command");
    let peak = std::fs::read_to_string(report.path()).expect("rss report").trim().parse().expect("rss number");
    (status, peak)
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
