//! Two hosts: a *web* host whose storage is the bundled `remote` driver, streaming to a
//! *services* host (`stowage serve`) that holds the data. Two real `stowage` processes on
//! 127.0.0.1, HTTPS with a test CA made here (plain HTTP in development mode where TLS is not
//! the point), real files on the services host's disk.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::serve::{KEY, Server, curl};
use crate::serve_tls::test_ca;
use crate::{run_in, stderr, stdout, stowage};

/// The services host's key, as the web host's environment holds it.
pub(crate) const KEY_ENV: &str = "SERVICES_API_KEY";
/// The web host's own key, for its clients.
pub(crate) const WEB_KEY: &str = "web-key-0123456789abcdef0123456789abcdef";

/// A services host's config: a local-fs disk for every class, the PHI ledger, and `server`.
pub(crate) fn services_config(dir: &Path, server: &str) {
    let text = format!(
        "role = \"services\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\n[storage]\ndefault = \"local\"\n\
         [[policies]]\nplugin = \"role-policy\"\n[[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n[server]\n{server}"
    );
    std::fs::write(dir.join("stowage.toml"), text).unwrap();
}

/// A web host's config: every class on one remote disk pointing at `url`; `grant_extra` and
/// `config_extra` add to the disk's grant and config tables; `server` is its own `[server]`.
pub(crate) fn web_config(dir: &Path, url: &str, grant_extra: &str, config_extra: &str, server: &str) {
    let text = format!(
        "role = \"web\"\n[disks.services]\nplugin = \"remote\"\ngrant = {{ endpoint = \"{url}\"{grant_extra} }}\n\
         config = {{ endpoint = \"{url}\", name = \"default\", backoff_ms = 50{config_extra} }}\n\
         [storage]\ndefault = \"services\"\nscratch = \"services\"\nsubmission = \"services\"\n\
         [[policies]]\nplugin = \"role-policy\"\n[[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n[server]\n{server}"
    );
    std::fs::write(dir.join("stowage.toml"), text).unwrap();
}

/// A services host over HTTPS with a fresh test CA (`ca.pem` in `dir`).
pub(crate) fn tls_services(dir: &Path) -> Server {
    test_ca(dir);
    services_config(
        dir,
        &format!("api_keys = [{{ env = \"{KEY_ENV}\" }}]\ntls = {{ cert = \"server.pem\", key = \"server.key\" }}\n"),
    );
    Server::start_with_env(dir, &[(KEY_ENV, KEY)])
}

/// A free loopback port (free when this returns; good enough for a test).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_driver_conformance_suite_passes_from_a_web_host_to_a_services_host_over_tls() {
    let services = tempfile::tempdir().unwrap();
    let server = tls_services(services.path());
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    std::fs::write(
        w.join("table.toml"),
        format!("endpoint = \"{}\"\nname = \"default\"\nbackoff_ms = 50\n", server.url),
    )
    .unwrap();
    let ca = services.path().join("ca.pem");
    let plugin_test = |extra: &[&str]| {
        stowage()
            .current_dir(w)
            .env(KEY_ENV, KEY)
            .args([
                "plugin",
                "test",
                "remote",
                "--config",
                "table.toml",
                "--grant-endpoint",
                &server.url,
                "--grant-api-key-env",
                KEY_ENV,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = plugin_test(&["--grant-ca-file", ca.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let all = stowage_conformance::checks().len();
    // The remote driver cannot suspend writes yet: its `suspend` answers unsupported, and the
    // web host keeps such sessions in memory.
    let resume = stowage_conformance::checks().iter().filter(|c| c.name.starts_with("resume/")).count();
    let summary = format!("{} passed, 0 failed, {resume} skipped", all - resume);
    assert_eq!(out.lines().last(), Some(summary.as_str()), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("PASS ")).count(), all - resume, "{out}");
    assert!(out.contains("SKIP resume/continues-elsewhere: the driver's `suspend` answers unsupported"), "{out}");
    // The suite's writes went through the services host's own pipeline: its ledger recorded
    // them, under the suite's scope.
    let entries = stowage_runtime::ledger::Ledger::open(&services.path().join("ledger.sqlite"), Default::default())
        .unwrap()
        .entries()
        .unwrap();
    let created = entries
        .iter()
        .filter(|e| e.record.action == "file_created" && e.record.path.starts_with("stowage-conformance-"))
        .count();
    assert!(created >= 10, "the services host recorded {created} writes of the suite");

    // Without the test CA the services host's certificate is not trusted: a clear failure
    // that names the fix, not a retry loop and not a silent downgrade.
    let o = plugin_test(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("certificate is not trusted") && stdout(&o).contains("grant.ca_file"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("attempts"), "an untrusted certificate was retried: {}", stdout(&o));
}

#[test]
fn wrong_or_missing_keys_are_refused_and_plain_http_needs_dev_mode() {
    let services = tempfile::tempdir().unwrap();
    let server = tls_services(services.path());
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    std::fs::write(w.join("f.txt"), "hello").unwrap();
    let ca = services.path().join("ca.pem");
    let ca_grant = format!(", ca_file = \"{}\"", ca.display());

    // The right key: the object goes to the services host's disk, none to the web host's.
    web_config(w, &server.url, &format!(", api_key = {{ env = \"{KEY_ENV}\" }}{ca_grant}"), "", "");
    let o = stowage().current_dir(w).env(KEY_ENV, KEY).args(["put", "default:notes/f.txt", "f.txt"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(services.path().join("data/notes/f.txt")).unwrap(), "hello");
    let o = stowage().current_dir(w).env(KEY_ENV, KEY).args(["get", "default:notes/f.txt"]).output().unwrap();
    assert_eq!((o.status.success(), stdout(&o).as_str()), (true, "hello"), "{}", stderr(&o));
    // A `name` the services host does not have is a configuration error, not "not found".
    let text =
        std::fs::read_to_string(w.join("stowage.toml")).unwrap().replace("name = \"default\"", "name = \"nope\"");
    std::fs::write(w.join("stowage.toml"), text).unwrap();
    let o = stowage().current_dir(w).env(KEY_ENV, KEY).args(["stat", "default:notes/f.txt"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no storage class or disk by this disk's `name`"), "{}", stderr(&o));

    // A wrong key and no key: 401 from the services host, a denial here, and the key never in
    // the message.
    for (grant, env) in [
        (format!(", api_key = {{ env = \"{KEY_ENV}\" }}{ca_grant}"), "wrong-key-0123456789abcdef0123456789abcdef"),
        (ca_grant.clone(), KEY),
    ] {
        web_config(w, &server.url, &grant, "", "");
        let o = stowage().current_dir(w).env(KEY_ENV, env).args(["get", "default:notes/f.txt"]).output().unwrap();
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(stderr(&o).contains("refused this host's API key"), "{}", stderr(&o));
        assert!(!stderr(&o).contains(env), "the key leaked: {}", stderr(&o));
    }

    // An API key for a plain http:// endpoint is refused outside dev mode, at start-up.
    let plain = server.url.replace("https://", "http://");
    web_config(w, &plain, &format!(", api_key = {{ env = \"{KEY_ENV}\" }}"), "", "");
    let o = stowage().current_dir(w).env(KEY_ENV, KEY).args(["get", "default:notes/f.txt"]).output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("would travel over plain HTTP"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(KEY), "{}", stderr(&o));
}

#[test]
fn the_remote_driver_reaches_only_its_granted_endpoint() {
    let services = tempfile::tempdir().unwrap();
    services_config(services.path(), &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let server = Server::start(services.path());
    // Another loopback port, listening: the driver is configured to call it, but granted only
    // the services host.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let other_url = format!("http://127.0.0.1:{}", other.local_addr().unwrap().port());
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    let text = format!(
        "role = \"web\"\n[disks.services]\nplugin = \"remote\"\ngrant = {{ endpoint = \"{}\" }}\nconfig = {{ endpoint = \"{other_url}\" }}\n\
         [storage]\ndefault = \"services\"\n[server]\ndev_mode = true\n",
        server.url
    );
    std::fs::write(w.join("stowage.toml"), text).unwrap();
    let o = run_in(w, &["stat", "default:a.txt"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("not the disk's granted endpoint"), "{}", stderr(&o));
    match other.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the other port was reached: {other:?}"),
    }
}

#[test]
fn a_services_host_that_is_down_gives_a_clear_retryable_error_not_a_hang() {
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    let url = format!("http://127.0.0.1:{}", free_port());
    web_config(w, &url, "", ", max_attempts = 3", &format!("dev_mode = true\napi_keys = [\"{WEB_KEY}\"]\n"));
    std::fs::write(w.join("f.txt"), "hello").unwrap();
    let started = Instant::now();
    let o = run_in(w, &["put", "default:f.txt", "f.txt"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot reach the services host") && stderr(&o).contains("after 3 attempts"),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());

    // Through the web host's own API: 503 with Retry-After.
    let web_server = Server::start(w);
    let o = curl(
        w,
        &[
            "-X",
            "PUT",
            "-H",
            &format!("Authorization: Bearer {WEB_KEY}"),
            "--data-binary",
            "x",
            "-D",
            "-",
            &format!("{}/v1/objects/default/f.txt", web_server.url),
        ],
    );
    let text = stdout(&o).to_ascii_lowercase();
    assert!(
        text.starts_with("http/1.1 503")
            && text.lines().any(|l| l.trim_end() == "retry-after: 1")
            && text.contains("cannot reach the services host"),
        "{text}"
    );
}

#[test]
fn a_services_host_that_accepts_but_never_answers_gives_a_retryable_error_in_bounded_time() {
    // Listening (connections complete in the kernel's backlog) but never answering.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    web_config(w, &url, "", ", max_attempts = 2, timeout_ms = 500", "");
    let started = Instant::now();
    let o = run_in(w, &["stat", "default:f.txt"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot reach the services host") && stderr(&o).contains("after 2 attempts"),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    drop(silent);
}
