//! The `deploy/` folder works as written: its configs pass `config check`, and a web +
//! services pair started from the systemd units' own command lines stores and reads an
//! object over TLS, the PHI landing on the services host only, and reloads with the units'
//! `ExecReload`. Only what a test machine must change is changed: `/var/lib/stowage` and the
//! cache move under a temporary directory, `/etc/stowage` is a directory per host, and the
//! hosts listen on free ports on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::serve::{Server, curl, status_and_body};
use crate::serve_tls::test_ca;
use crate::{stderr, stdout};

pub(crate) const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
pub(crate) const WEB_1_KEY: &str = "web-1-key-0123456789abcdef0123456789abcdef";
pub(crate) const APP_KEY: &str = "app-key-0123456789abcdef0123456789abcdef";

/// Each host's secret files (`/etc/stowage/secrets/NAME`).
fn secrets(role: &str) -> Vec<(&'static str, &'static str)> {
    match role {
        "services" => vec![("web-1.key", WEB_1_KEY), ("url.secret", "url-secret-0123456789abcdef0123456789")],
        _ => vec![("services.key", WEB_1_KEY), ("app.key", APP_KEY)],
    }
}

/// Installs `deploy/ROLE/stowage.toml` as `root/ROLE/etc/stowage.toml`, each of `changes`
/// applied (each must apply: the test follows the file), with TLS files beside it.
fn install(root: &Path, role: &str, changes: &[(&str, String)]) -> PathBuf {
    install_as(root, role, &format!("{role}/stowage.toml"), &secrets(role), changes)
}

/// Installs `deploy/FILE` as host `host`'s `root/HOST/etc/stowage.toml`, with its secret
/// files, a test CA and certificate in `etc/tls`, `/var/lib/stowage` moved to `root/HOST/var`,
/// the cache to the tests' shared one, and each of `changes` applied (each must apply: the
/// test follows the file).
pub(crate) fn install_as(
    root: &Path,
    host: &str,
    file: &str,
    secrets: &[(&str, &str)],
    changes: &[(&str, String)],
) -> PathBuf {
    let etc = root.join(host).join("etc");
    std::fs::create_dir_all(etc.join("tls")).unwrap();
    std::fs::create_dir_all(etc.join("secrets")).unwrap();
    test_ca(&etc.join("tls"));
    for (name, value) in secrets {
        std::fs::write(etc.join("secrets").join(name), format!("{value}\n")).unwrap();
    }
    let mut text = std::fs::read_to_string(Path::new(DEPLOY).join(file)).unwrap();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stowage-cache");
    let var = root.join(host).join("var");
    let mut all = vec![
        ("/var/lib/stowage", var.display().to_string()),
        ("/var/cache/stowage", cache.display().to_string()),
        ("/etc/stowage/secrets", etc.join("secrets").display().to_string()),
    ];
    all.extend(changes.iter().cloned());
    for (from, to) in all {
        assert!(text.contains(from), "deploy/{file} no longer has {from:?}: update this test");
        text = text.replace(from, &to);
    }
    let file = etc.join("stowage.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The unit's `KEY=` command line for `role`, run as a test would: the test's binary and the
/// installed config.
pub(crate) fn unit_command(role: &str, key: &str, config: &Path) -> Command {
    let unit =
        std::fs::read_to_string(Path::new(DEPLOY).join("systemd").join(format!("stowage-{role}.service"))).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the {role} unit"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..3], ["/usr/local/bin/stowage", "--config", "/etc/stowage/stowage.toml"], "{role} {key}: {line}");
    let mut cmd = crate::stowage();
    cmd.arg("--config").arg(config).args(&words[3..]);
    cmd
}

#[test]
fn the_deploy_configs_pass_config_check_and_the_pair_serves_from_the_units() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let free = ("0.0.0.0:8443", "127.0.0.1:0".to_string());
    let services = install(root, "services", &[free]);
    // The units check the config before they start it.
    let o = unit_command("services", "ExecStartPre", &services).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("server: https://127.0.0.1:0, 1 API key(s), signed URLs on"), "{}", stdout(&o));
    // Both hosts are killed when the test ends, whatever its outcome.
    let services_host = Server::spawn(unit_command("services", "ExecStart", &services));
    let services_url = services_host.url.clone();

    let web = install(
        root,
        "web",
        &[("127.0.0.1:8443", "127.0.0.1:0".into()), ("https://services.example.org:8443", services_url.clone())],
    );
    // One deployment CA: the web host trusts the CA that signed the services host's certificate.
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::copy(root.join("services/etc/tls").join(f), root.join("web/etc/tls").join(f)).unwrap();
    }
    let o = unit_command("web", "ExecStartPre", &web).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let web_host = Server::spawn(unit_command("web", "ExecStart", &web));
    let web_url = web_host.url.clone();

    // The application stores an object through the web host and reads it back.
    let web_tls = root.join("web/etc/tls");
    let ca = web_tls.join("ca.pem").display().to_string();
    let auth = format!("Authorization: Bearer {APP_KEY}");
    let obj = format!("{web_url}/v1/objects/submission/cohort-7/visit.csv");
    let (status, body) = status_and_body(&curl(
        root,
        &["--cacert", &ca, "-X", "PUT", "-H", &auth, "--data-binary", "id,age\n1,42\n", "-w", "\n%{http_code}", &obj],
    ));
    assert_eq!(status, "200", "{body}");
    let (status, body) = status_and_body(&curl(root, &["--cacert", &ca, "-H", &auth, "-w", "\n%{http_code}", &obj]));
    assert_eq!((status.as_str(), body.as_str()), ("200", "id,age\n1,42\n"));
    // The PHI is on the services host's archive disk, and the web host has no data at all.
    assert_eq!(
        std::fs::read_to_string(root.join("services/var/archive/cohort-7/visit.csv")).unwrap(),
        "id,age\n1,42\n"
    );
    let web_var: Vec<_> = std::fs::read_dir(root.join("web/var")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(web_var, vec![std::ffi::OsString::from("ledger")], "the web host keeps only its ledger");

    // A key rotated in its file takes effect with `systemctl reload` (the unit's ExecReload):
    // the web host's own key, as the application's deployment would rotate it.
    let rotated = "app-key-rotated-0123456789abcdef0123456789";
    std::fs::write(root.join("web/etc/secrets/app.key"), rotated).unwrap();
    let o = unit_command("web", "ExecReload", &web).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("reloaded: process"), "{}", stdout(&o));
    let get = |key: &str| {
        status_and_body(&curl(
            root,
            &["--cacert", &ca, "-H", &format!("Authorization: Bearer {key}"), "-w", "\n%{http_code}", &obj],
        ))
        .0
    };
    assert_eq!(get(rotated), "200", "the rotated key works after the reload");
    assert_eq!(get(APP_KEY), "401", "the old key no longer does");
}
