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
        (
            "default = \"local\"",
            "default = \"nas\"",
            &["bad.toml:8:", "storage.default = \"nas\": no disk of that name; defined disks: local"],
        ),
        (
            "plugin = \"local-fs\"",
            "plugin = \"local-fs\"\nlimits = { memory_mib = \"lots\" }",
            &["bad.toml:5:", "`memory_mib`", "expected u64"],
        ),
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

#[test]
fn a_disk_whose_way_out_cannot_be_built_stops_the_start_before_anything_is_created() {
    // A CA file that is PEM (so `config check` accepts it) whose certificate is not one: the
    // connection pool cannot be built. That is found before the ledger or any granted
    // directory is created.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n")
        .unwrap();
    let text = GOOD.to_string()
        + "\n[disks.far]\nplugin = \"remote\"\ngrant = { endpoint = \"https://127.0.0.1:9\", ca_file = \"ca.pem\" }\n";
    std::fs::write(d.join("stowage.toml"), &text).unwrap();
    let checked = run_in(d, &["config", "check"]);
    assert!(checked.status.success(), "the file itself is fine: {}", stderr(&checked));
    let o = run_in(d, &["ls", "local:"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("disks.far.grant: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("ca.pem"), "names the file: {}", stderr(&o));
    assert!(!d.join("data").exists(), "no granted directory was created");
    assert!(!d.join("stowage-ledger.sqlite").exists(), "no ledger was created");
}

/// Runs `stowage ARGS` in `dir`, killed if it is still running after 60 s (a `serve` that
/// wrongly accepted its config would never return).
pub(crate) fn run_bounded(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut child = crate::stowage()
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The 1-based line of `text` where `marker` first appears.
fn line_of(text: &str, marker: &str) -> usize {
    text[..text.find(marker).unwrap_or_else(|| panic!("{marker:?} not in {text}"))].matches('\n').count() + 1
}

#[test]
fn config_check_reports_every_refusal_of_serve_first_with_its_line() {
    use crate::serve::KEY;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::serve_tls::test_ca(d);
    std::fs::create_dir(d.join("ledgers")).unwrap();
    // A grant that is a symlink to the ledger's directory.
    std::os::unix::fs::symlink(d.join("ledgers"), d.join("data-link")).unwrap();
    std::fs::copy(stowage_tests::fixture("test_policy"), d.join("unsigned.wasm")).unwrap();
    let tls = "tls = { cert = \"server.pem\", key = \"server.key\" }\n";
    let good_server = format!("listen = \"127.0.0.1:0\"\n{tls}api_keys = [\"{KEY}\"]\n");
    let text = |server: &str, grant: &str, policies: &str| {
        format!(
            "role = \"services\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"{grant}\" }}\n[storage]\ndefault = \"local\"\n\
             {policies}[ledger]\npath = \"ledgers/ledger.sqlite\"\n[server]\n{server}"
        )
    };
    let short = "short".repeat(2);
    let cases: Vec<(String, &str, &str)> = vec![
        // (config, the text on the line the problem is at, what the message says)
        (
            text(&format!("listen = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\n"), "data", ""),
            "[server]",
            "plain HTTP is refused outside development",
        ),
        (
            text(&format!("listen = \"127.0.0.1:0\"\n{tls}api_keys = [\"{short}\"]\n"), "data", ""),
            "api_keys",
            "api_keys[0] is shorter than 32 characters",
        ),
        (
            text(
                &format!("listen = \"127.0.0.1:0\"\n{tls}api_keys = [{{ env = \"STOWAGE_TEST_UNSET_KEY\" }}]\n"),
                "data",
                "",
            ),
            "api_keys",
            "`STOWAGE_TEST_UNSET_KEY` is not set",
        ),
        (
            text(
                &format!(
                    "listen = \"127.0.0.1:0\"\n{tls}api_keys = [\n  {{ name = \"a\", key = \"{KEY}\" }},\n  {{ name = \"a\", key = \"{KEY}x\" }},\n]\n"
                ),
                "data",
                "",
            ),
            "{ name = \"a\", key = \"test-key-0123456789abcdef0123456789abcdefx\"",
            "the name `a` is used by another key",
        ),
        (
            text(&format!("{good_server}url_secret = \"{short}\"\n"), "data", ""),
            "url_secret",
            "url_secret is shorter than 32 characters",
        ),
        (
            text(
                &format!(
                    "listen = \"127.0.0.1:0\"\ntls = {{ cert = \"missing.pem\", key = \"server.key\" }}\napi_keys = [\"{KEY}\"]\n"
                ),
                "data",
                "",
            ),
            "tls =",
            "missing.pem",
        ),
        (
            text(
                &format!(
                    "listen = \"127.0.0.1:0\"\ntls = {{ cert = \"server.pem\", key = \"ca.pem\" }}\napi_keys = [\"{KEY}\"]\n"
                ),
                "data",
                "",
            ),
            "tls =",
            "ca.pem",
        ),
        (
            text(&format!("listen = \"nowhere\"\n{tls}api_keys = [\"{KEY}\"]\n"), "data", ""),
            "listen",
            "listen = `nowhere` is not an address",
        ),
        (text(&good_server, "data-link", ""), "grant =", "contains the ledger"),
        (text(&good_server, ".", ""), "grant =", "contains this config file"),
        (
            text(&good_server, "data", "[[policies]]\nplugin = \"./unsigned.wasm\"\n"),
            "plugin = \"./unsigned.wasm\"",
            "signature check failed",
        ),
    ];
    for (config, marker, want) in &cases {
        std::fs::write(d.join("bad.toml"), config).unwrap();
        let at = format!("bad.toml:{}:", line_of(config, marker));
        let check = run_bounded(d, &["config", "check", "bad.toml"]);
        assert_eq!(check.status.code(), Some(5), "{want}: {}", stderr(&check));
        let serve = run_bounded(d, &["--config", "bad.toml", "serve"]);
        assert_eq!(serve.status.code(), Some(5), "{want}: serve {}", stderr(&serve));
        for (who, o) in [("config check", &check), ("serve", &serve)] {
            let err = stderr(o);
            assert!(
                err.lines().any(|l| l.contains(&at) && l.contains(want)),
                "{who}: expected {at} ... {want:?} in:\n{err}\nconfig:\n{config}"
            );
            assert!(!err.contains(KEY), "{who}: a key leaked: {err}");
        }
        assert!(!d.join("ledgers/ledger.sqlite").exists(), "{want}: a refused config created the ledger");
    }
    // All at once: three problems in one file, three located lines.
    let config = text(&format!("listen = \"nowhere\"\n{tls}api_keys = [\"{short}\"]\n"), "data-link", "");
    std::fs::write(d.join("bad.toml"), &config).unwrap();
    let err = stderr(&run_bounded(d, &["config", "check", "bad.toml"]));
    for (marker, want) in
        [("grant =", "contains the ledger"), ("listen", "is not an address"), ("api_keys", "shorter than 32")]
    {
        let at = format!("bad.toml:{}:", line_of(&config, marker));
        assert!(err.lines().any(|l| l.contains(&at) && l.contains(want)), "expected {at} ... {want:?} in:\n{err}");
    }
    // And a config serve accepts checks ok, saying how it would serve.
    std::fs::write(d.join("good.toml"), text(&good_server, "data", "")).unwrap();
    let o = run_bounded(d, &["config", "check", "good.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("server: https://127.0.0.1:0, 1 API key(s), signed URLs off"), "{}", stdout(&o));
}
