//! Malformed config files give errors that name the field and the line.

use crate::{run_in, stderr, stdout};

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), text).unwrap();
    let o = run_in(dir.path(), &["config", "check", "bad.toml"]);
    (o.status.code().unwrap_or(-1), stderr(&o))
}

const GOOD: &str = "role = \"testing\"\n\n[disks.local]\nplugin = \"local-fs\"\ngrant = { dir = \"./data\" }\n\n[storage]\ndefault = \"local\"\n";

#[test]
fn a_good_config_checks_ok_and_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.toml"), GOOD).unwrap();
    let o = run_in(dir.path(), &["config", "check", "good.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("good.toml: ok"), "{out}");
    assert!(out.contains("class scratch -> disk local"), "{out}");
}

#[test]
fn malformed_configs_name_the_field_and_line() {
    let cases: &[(&str, &str, &[&str])] = &[
        // (what to change, replacement, expected fragments)
        ("grant = {", "grnat = {", &["bad.toml:5:", "unknown field `grnat`"]),
        ("role = \"testing\"", "role = \"tester\"", &["bad.toml:1:", "tester", "web", "services", "testing"]),
        ("default = \"local\"", "default = \"nas\"", &["bad.toml:8:", "storage.default = \"nas\": no disk of that name; defined disks: local"]),
        ("plugin = \"local-fs\"", "plugin = \"local-fs\"\nlimits = { memory_mib = \"lots\" }", &["bad.toml:5:", "`memory_mib`", "expected u64"]),
        ("plugin = \"local-fs\"", "plugin = \"./missing.wasm\"", &["bad.toml:4:", "plugin file", "does not exist"]),
        ("[storage]", "[storage\n", &["bad.toml:7:"]),
        ("[disks.local]", "[disks.scratch]", &["bad.toml:3:", "also a storage class name"]),
    ];
    for (from, to, want) in cases {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "case {from:?} did not change the config");
        let (code, err) = check(&text);
        assert_eq!(code, 5, "{to:?}: {err}");
        for w in *want {
            assert!(err.contains(w), "{to:?}: expected {w:?} in: {err}");
        }
    }
}

#[test]
fn a_bad_config_stops_every_command_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stowage.toml"), GOOD.replace("plugin", "plugn")).unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let o = run_in(dir.path(), &["put", "default:f", "f"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("stowage.toml:4:"), "{}", stderr(&o));
    assert!(!dir.path().join("data").exists(), "nothing is created for a bad config");
}
