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
    // local-fs declares every optional capability the suite tests (all but presign); role-policy
    // checks every operation and observes none; phi-tracking checks none and observes all.
    std::fs::create_dir(dir.path().join("disk")).unwrap();
    for (plugin, summary, args) in [
        ("local-fs", format!("{all} passed, 0 failed, 0 skipped"), vec!["--grant-dir", "disk"]),
        ("role-policy", "4 passed, 0 failed, 1 skipped".to_string(), vec![]),
        ("phi-tracking", "3 passed, 0 failed, 2 skipped".to_string(), vec![]),
    ] {
        let mut a = vec![plugin];
        a.extend(args);
        let o = plugin_test(dir.path(), &a);
        let out = stdout(&o);
        assert!(o.status.success(), "{plugin}:\n{out}\n{}", stderr(&o));
        assert_eq!(out.lines().last(), Some(summary.as_str()), "{plugin}:\n{out}");
    }
    // The crashed write the suite makes was reported by list-temps and removed: none is left.
    let temps: Vec<_> = std::fs::read_dir(dir.path().join("disk/.stowage-tmp")).unwrap().collect();
    assert!(temps.is_empty(), "local-fs did not report a crashed write's temp file: {temps:?}");
}

/// Plugins built against contract 0.3.0 (before `resumable`): the bundled local-fs and
/// phi-tracking as main built them then, kept as files. They load and pass; the driver's
/// `resume/*` checks are skipped, saying why.
#[test]
fn plugins_built_against_contract_0_3_0_still_load_and_pass() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.3.0");
    std::fs::create_dir(dir.path().join("disk")).unwrap();
    for file in ["stowage_local_fs.wasm", "stowage_phi_tracking.wasm"] {
        std::fs::copy(fixtures.join(file), dir.path().join(file)).unwrap();
    }
    let o = stowage().current_dir(dir.path()).args(["plugin", "inspect", "stowage_local_fs.wasm"]).output().unwrap();
    let out = stdout(&o);
    assert!(out.contains("world: driver") && out.contains("export: stowage:storage/store@0.3.0"), "{out}");
    assert!(!out.contains("resumable"), "{out}");

    let all = stowage_conformance::checks().len();
    let resume = stowage_conformance::checks().iter().filter(|c| c.name.starts_with("resume/")).count();
    assert_eq!(resume, 4);
    let o = plugin_test(dir.path(), &["stowage_local_fs.wasm", "--grant-dir", "disk"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert_eq!(
        out.lines().last(),
        Some(format!("{} passed, 0 failed, {resume} skipped", all - resume).as_str()),
        "{out}"
    );
    assert!(
        out.contains("SKIP resume/continues-elsewhere: the driver does not export `resumable` (contract 0.3.1)"),
        "{out}"
    );
    let o = plugin_test(dir.path(), &["stowage_phi_tracking.wasm"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert_eq!(out.lines().last(), Some("3 passed, 0 failed, 2 skipped"), "{out}");
}

/// `stowage plugin test s3 --json` against a fresh bucket on `server`, in `dir`, with the
/// secrets as env references (as an operator would write them): its output and report.
async fn s3_plugin_test(server: &stowage_tests::s3::S3Server, dir: &Path) -> (String, Output, serde_json::Value) {
    let bucket = stowage_tests::s3::fresh_bucket(server, "plugin-test").await;
    let table = format!(
        "endpoint = \"{}\"\nbucket = \"{bucket}\"\npart_size_mib = 5\naccess_key_id = {{ env = \"T_KEY\" }}\nsecret_access_key = {{ env = \"T_SECRET\" }}\n",
        server.endpoint
    );
    std::fs::write(dir.join("s3.toml"), table).unwrap();
    let o = stowage()
        .current_dir(dir)
        .env("T_KEY", &server.access_key)
        .env("T_SECRET", &server.secret_key)
        .args(["plugin", "test", "s3", "--config", "s3.toml", "--grant-endpoint", &server.endpoint, "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}\n{}", stdout(&o), stderr(&o)));
    assert_eq!(report["world"], "driver");
    assert!(!stdout(&o).contains(&server.secret_key) && !stderr(&o).contains(&server.secret_key), "the secret leaked");
    (bucket, o, report)
}

/// The names of the checks that failed in `report`.
fn failed_checks(report: &serde_json::Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .filter_map(|c| c["check"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_s3_driver_passes_plugin_test_against_rclone() {
    use stowage_tests::s3::aws_sdk_s3::primitives::ByteStream;
    let server = stowage_tests::s3::server_of(stowage_tests::s3::Which::Rclone);
    let dir = tempfile::tempdir().unwrap();
    let (bucket, o, report) = s3_plugin_test(&server, dir.path()).await;
    // One known failure, the server's and not the driver's: rclone ignores `If-None-Match: *`
    // on a PUT (it overwrites), so no create-only write can be refused. The native client
    // sees the same, below.
    // A second: rclone streams each part of a multipart upload into the object as it arrives,
    // so a part stored after a suspend (by a request whose host then died) cannot be left
    // out: resuming from the older token fails at the completion (SeaweedFS, like S3, leaves
    // the part out: the same check passes there).
    assert_eq!(failed_checks(&report), ["write/create-only", "resume/older-token-drops-later-bytes"], "{report:#}");
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let native = stowage_tests::s3::native_client(&server, None);
    native.put_object().bucket(&bucket).key("once").body(ByteStream::from_static(b"1")).send().await.unwrap();
    let again = native
        .put_object()
        .bucket(&bucket)
        .key("once")
        .if_none_match("*")
        .body(ByteStream::from_static(b"2"))
        .send()
        .await;
    assert!(again.is_ok(), "rclone refuses create-only PUTs now ({again:?}): expect no failure above");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_s3_driver_passes_plugin_test_against_a_real_server() {
    let server = stowage_tests::s3::server();
    let dir = tempfile::tempdir().unwrap();
    let (bucket, o, report) = s3_plugin_test(&server, dir.path()).await;
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    // One known failure, the server's and not the driver's: S3 lists keys in byte order, and
    // SeaweedFS lists them by path component (`a/b/c` before `a/b.txt`) across pages. The
    // native client sees the same order, below.
    let failed: Vec<&serde_json::Value> =
        report["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["check"], "list/order", "{report:#}");
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("pages of one item gave"),
        "only paged listings are out of order: {report:#}"
    );
    assert_eq!(report["passed"], stowage_conformance::checks().len() - 1, "{report:#}");
    let native = stowage_tests::s3::native_client(&server, None);
    for key in ["order/a.txt", "order/a/b/c", "order/a/b.txt"] {
        native.put_object().bucket(&bucket).key(key).body(Vec::from("x").into()).send().await.unwrap();
    }
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..3 {
        let page = native
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("order/")
            .max_keys(1)
            .set_start_after(after.clone())
            .send()
            .await
            .unwrap();
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        after = keys.last().cloned();
    }
    assert_ne!(
        keys,
        ["order/a.txt", "order/a/b.txt", "order/a/b/c"],
        "SeaweedFS lists in byte order now: expect no failure above"
    );

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

/// A planted bug: its name, the template's lines it replaces (what the template says, what the
/// broken driver says instead), and the checks that must fail with words their reasons carry.
struct Bug {
    name: &'static str,
    edits: &'static [(&'static str, &'static str)],
    fails: &'static [(&'static str, &'static str)],
}

const CAPS: &str = "Capabilities::empty()\n    }";

const BUGS: &[Bug] = &[
    Bug {
        name: "list-skips",
        edits: &[(
            "paths.sort();",
            "paths.sort();\n        if paths.len() > 1 {\n            paths.remove(1);\n        }",
        )],
        fails: &[("list/prefix", "list a/ gave")],
    },
    Bug {
        name: "list-skips-a-file-next-to-its-directory",
        edits: &[(
            "        } else {\n            out.push(path);\n        }",
            "        } else if !fs::metadata(format!(\"/{}\", path.trim_end_matches(\".txt\"))).is_ok_and(|m| m.is_dir()) {\n            out.push(path);\n        }",
        )],
        fails: &[("list/order", "not byte order")],
    },
    Bug {
        name: "abort-keeps",
        edits: &[(
            "fs::remove_file(&self.temp).map_err(|e| io_error(\"abort\", &self.path, e))?;",
            "let target = file_of(&self.path);\n            let _ = fs::create_dir_all(target.rsplit_once('/').map_or(\"/\", |(d, _)| d));\n            fs::rename(&self.temp, &target).map_err(|e| io_error(\"abort\", &self.path, e))?;",
        )],
        fails: &[
            ("write/abort-leaves-nothing", "an aborted write"),
            ("write/drop-leaves-nothing", "once its abort ran"),
        ],
    },
    Bug {
        name: "drop-keeps",
        edits: &[
            (
                "        if self.file.borrow_mut().take().is_some() {\n            fs::remove_file(&self.temp).map_err(|e| io_error(\"abort\", &self.path, e))?;\n        }\n        Ok(())",
                "        Ok(())",
            ),
            (
                "        // Dropped without finish: leave nothing behind.\n        if self.file.borrow_mut().take().is_some() {\n            let _ = fs::remove_file(&self.temp);",
                "        if self.file.borrow_mut().take().is_some() {\n            let target = file_of(&self.path);\n            let _ = fs::create_dir_all(target.rsplit_once('/').map_or(\"/\", |(d, _)| d));\n            let _ = fs::rename(&self.temp, &target);",
            ),
        ],
        fails: &[("write/drop-leaves-nothing", "once its abort ran")],
    },
    Bug {
        name: "wrong-size",
        edits: &[(
            "Ok(meta) => Ok(info_of(&self.path, &meta, Some(digest.sha256))),",
            "Ok(meta) => Ok(ObjectInfo { size: meta.len() + 1, ..info_of(&self.path, &meta, Some(digest.sha256)) }),",
        )],
        fails: &[(
            "write/put-get-roundtrip",
            "broke the storage contract: finish reported 300001 bytes but the host wrote 300000",
        )],
    },
    Bug {
        name: "stores-no-sha256",
        edits: &[(CAPS, "Capabilities::USER_METADATA\n    }")],
        fails: &[("read/stat-sha256", "stores no digest")],
    },
    Bug {
        name: "create-only-not-atomic",
        edits: &[
            (CAPS, "Capabilities::CREATE_ONLY\n    }"),
            (
                "        if options.create_only {\n            return Err(Error::Unsupported(\"create-only writes\".into()));\n        }",
                "        if options.create_only && fs::metadata(file_of(&path)).is_ok() {\n            return Err(Error::AlreadyExists(path.to_string()));\n        }",
            ),
        ],
        fails: &[("write/create-only", "exactly one must win")],
    },
    Bug {
        name: "presign-garbage",
        edits: &[
            (CAPS, "Capabilities::PRESIGN\n    }"),
            ("Err(Error::Unsupported(\"signed URLs\".into()))", "Ok(\"garbage\".into())"),
        ],
        fails: &[("read/url-or-unsupported", "not an http(s) URL")],
    },
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
    for bug in BUGS {
        let mut broken = source.clone();
        for (good, bad) in bug.edits {
            assert_eq!(source.matches(good).count(), 1, "{}: the template no longer says {good:?}", bug.name);
            broken = broken.replace(good, bad);
        }
        std::fs::write(project.join("src/lib.rs"), broken).unwrap();
        let mut build = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build
            .current_dir(&project)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(&target);
        for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
            build.env_remove(var);
        }
        let b = build.output().unwrap();
        assert!(b.status.success(), "{}: the broken driver does not build:\n{}", bug.name, stderr(&b));

        let o = plugin_test(dir.path(), &[wasm.to_str().unwrap()]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {out}\n{}", bug.name, stderr(&o));
        for (check, why) in bug.fails {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("FAIL {check}:")))
                .unwrap_or_else(|| panic!("{}: no FAIL {check}:\n{out}", bug.name));
            assert!(line.contains(why), "{}: {line}", bug.name);
        }
        assert!(
            out.lines().last().is_some_and(|l| l.contains(" passed, ") && !l.contains(" 0 failed")),
            "{}: {out}",
            bug.name
        );
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
    let o = stowage()
        .current_dir(d)
        .env("STOWAGE_CONFIG", "stowage.toml")
        .args(["plugin", "test", "role-policy"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}
