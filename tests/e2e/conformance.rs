//! `stowage plugin test`, the black-box conformance kit, run as users run it: every bundled
//! plugin passes it, and deliberately broken plugins fail it with the broken check named.

use std::path::Path;
use std::process::Output;

use crate::{stderr, stdout, stowage};

/// Runs `stowage plugin test ARGS` in `dir`.
fn plugin_test(dir: &Path, args: &[&str]) -> Output {
    stowage().current_dir(dir).args(["plugin", "test"]).args(args).output().expect("stowage runs")
}

#[test]
fn every_bundled_local_plugin_passes_plugin_test() {
    let dir = tempfile::tempdir().unwrap();
    let all = stowage_conformance::checks().len();
    // local-fs declares every optional capability the suite tests; role-policy checks every
    // operation and observes none; phi-tracking observes and checks none.
    for (plugin, summary) in [
        ("local-fs", format!("{all} passed, 0 failed, 0 skipped")),
        ("role-policy", "4 passed, 0 failed, 1 skipped".to_string()),
        ("phi-tracking", "3 passed, 0 failed, 2 skipped".to_string()),
    ] {
        let o = plugin_test(dir.path(), &[plugin]);
        let out = stdout(&o);
        assert!(o.status.success(), "{plugin}:\n{out}\n{}", stderr(&o));
        assert_eq!(out.lines().last(), Some(summary.as_str()), "{plugin}:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_s3_driver_passes_plugin_test_against_a_real_server() {
    let server = stowage_tests::s3::server();
    let bucket = stowage_tests::s3::fresh_bucket(&server, "plugin-test").await;
    let dir = tempfile::tempdir().unwrap();
    // Secrets as env references, as an operator would write them.
    let table = format!(
        "endpoint = \"{}\"\nbucket = \"{bucket}\"\npart_size_mib = 5\naccess_key_id = {{ env = \"T_KEY\" }}\nsecret_access_key = {{ env = \"T_SECRET\" }}\n",
        server.endpoint
    );
    std::fs::write(dir.path().join("s3.toml"), table).unwrap();
    let o = stowage()
        .current_dir(dir.path())
        .env("T_KEY", &server.access_key)
        .env("T_SECRET", &server.secret_key)
        .args(["plugin", "test", "s3", "--config", "s3.toml", "--grant-endpoint", &server.endpoint, "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["world"], "driver");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["passed"], stowage_conformance::checks().len(), "{report:#}");
    assert!(!stdout(&o).contains(&server.secret_key) && !stderr(&o).contains(&server.secret_key), "the secret leaked");

    // Without the endpoint grant the driver can reach nothing, and the failures say so.
    let o = stowage()
        .current_dir(dir.path())
        .env("T_KEY", &server.access_key)
        .env("T_SECRET", &server.secret_key)
        .args(["plugin", "test", "s3", "--config", "s3.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("FAIL write/put-get-roundtrip"), "{}", stdout(&o));
}

/// Each planted bug: (name, what the template says, what the broken driver says instead, the
/// check that must fail, words its reason must carry).
const BUGS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "list-skips",
        "paths.sort();",
        "paths.sort();\n        if paths.len() > 1 {\n            paths.remove(1);\n        }",
        "list/prefix",
        "list a/ gave",
    ),
    (
        "abort-keeps",
        "fs::remove_file(&self.temp).map_err(|e| io_error(\"abort\", &self.path, e))?;",
        "let target = file_of(&self.path);\n            let _ = fs::create_dir_all(target.rsplit_once('/').map_or(\"/\", |(d, _)| d));\n            fs::rename(&self.temp, &target).map_err(|e| io_error(\"abort\", &self.path, e))?;",
        "write/abort-leaves-nothing",
        "an aborted write",
    ),
    (
        "wrong-size",
        "Ok(meta) => Ok(info_of(&self.path, &meta, Some(digest.sha256))),",
        "Ok(meta) => Ok(ObjectInfo { size: meta.len() + 1, ..info_of(&self.path, &meta, Some(digest.sha256)) }),",
        "write/put-get-roundtrip",
        "broke the storage contract: finish reported 300001 bytes but the host wrote 300000",
    ),
];

#[test]
fn broken_drivers_fail_plugin_test_with_the_broken_check_named() {
    // Each broken driver is the `plugin new` driver (which passes: see the guide test) with
    // one bug planted, so each failure is that bug's doing.
    let dir = tempfile::tempdir().unwrap();
    let o = stowage().current_dir(dir.path()).args(["plugin", "new", "driver", "broken"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let project = dir.path().join("broken");
    let source = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("broken-drivers");
    let wasm = target.join("wasm32-wasip2/release/broken.wasm");
    for (bug, good, bad, check, why) in BUGS {
        assert_eq!(source.matches(good).count(), 1, "{bug}: the template no longer says {good:?}");
        std::fs::write(project.join("src/lib.rs"), source.replace(good, bad)).unwrap();
        let mut build = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build.current_dir(&project).args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"]).arg(&target);
        for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
            build.env_remove(var);
        }
        let b = build.output().unwrap();
        assert!(b.status.success(), "{bug}: the broken driver does not build:\n{}", stderr(&b));

        let o = plugin_test(dir.path(), &[wasm.to_str().unwrap()]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{bug}: {out}\n{}", stderr(&o));
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("FAIL {check}:")))
            .unwrap_or_else(|| panic!("{bug}: no FAIL {check}:\n{out}"));
        assert!(line.contains(why), "{bug}: {line}");
        assert!(out.lines().last().is_some_and(|l| l.contains(" passed, ") && !l.contains(" 0 failed")), "{bug}: {out}");
        assert!(stderr(&o).contains("conformance check(s) failed"), "{}", stderr(&o));
    }
}

#[test]
fn a_policy_that_traps_on_odd_input_fails_plugin_test() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = stowage_tests::fixture("test_policy");
    std::fs::write(dir.path().join("p.toml"), "mode = \"needs-actor\"\n").unwrap();
    let o = plugin_test(dir.path(), &[wasm.to_str().unwrap(), "--config", "p.toml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("PASS policy/answers-every-operation"), "{out}");
    let line = out.lines().find(|l| l.starts_with("FAIL policy/odd-input:")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("no actor, class or metadata") && line.contains("trap"), "{line}");
}

#[test]
fn plugin_test_refuses_what_it_cannot_test_with_a_clear_message_and_exit_code_5() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("junk.wasm"), b"\0asm not really").unwrap();
    let o = plugin_test(d, &["junk.wasm"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("junk.wasm"), "{}", stderr(&o));
    let o = plugin_test(d, &["s4"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(stderr(&o).contains("neither a bundled plugin"), "{}", stderr(&o));
    // A host config given as the plugin's table would hand the plugin its secrets.
    std::fs::write(d.join("stowage.toml"), "role = \"testing\"\n[storage]\ndefault = \"x\"\n").unwrap();
    let o = plugin_test(d, &["local-fs", "--config", "stowage.toml"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(stderr(&o).contains("looks like a host config"), "{}", stderr(&o));
    let o = plugin_test(d, &["role-policy", "--grant-dir", "x"]);
    assert!(stderr(&o).contains("--grant-dir and --grant-endpoint are for drivers"), "{}", stderr(&o));
    // STOWAGE_CONFIG names a host config, never the plugin's table: it is ignored here.
    let o = stowage().current_dir(d).env("STOWAGE_CONFIG", "stowage.toml").args(["plugin", "test", "role-policy"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}
