//! Reload without downtime: `stowage serve` re-reads its config and plugins on SIGHUP (what
//! `stowage reload` sends); a stream in flight finishes on the set it started on, new requests
//! get the new set, and a tampered plugin is refused while the last good set keeps serving.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::Digest as _;

use crate::serve::{KEY, Server, curl, status_and_body};
use crate::{run_in, stderr, stdout};

/// A services host in development mode whose one policy is the signed test policy in `mode`.
fn config(d: &Path, mode: &str) -> String {
    let text = format!(
        "role = \"services\"\n[trust]\nkeys = [\"k.pub\"]\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\n\
         [storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"./policy.wasm\"\nconfig = {{ mode = \"{mode}\" }}\n\
         [ledger]\npath = \"ledger.sqlite\"\n[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n"
    );
    std::fs::write(d.join("stowage.toml"), &text).unwrap();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The HTTP status of a small PUT to `path`, with extra curl arguments.
fn put(d: &Path, server: &Server, path: &str, extra: &[&str]) -> String {
    let auth = format!("Authorization: Bearer {KEY}");
    let url = format!("{}/v1/objects/default/{path}", server.url);
    let mut args = vec!["-X", "PUT", "-H", &auth, "--data-binary", "x", "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(&url);
    status_and_body(&curl(d, &args)).0
}

/// The value of metric `name` (a line `name VALUE` or `name{...} VALUE`).
fn metric(d: &Path, server: &Server, name: &str) -> String {
    let auth = format!("Authorization: Bearer {KEY}");
    let (_, body) =
        status_and_body(&curl(d, &["-H", &auth, "-w", "\n%{http_code}", &format!("{}/metrics", server.url)]));
    body.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {body}")).to_string()
}

/// A PUT of `path` whose body the test writes as it goes (curl reading its stdin); the
/// answer is curl's output, its status on the last line.
fn streaming_put(d: &Path, server: &Server, path: &str) -> (std::process::Child, std::process::ChildStdin) {
    let mut child = Command::new("curl")
        .current_dir(d)
        .args([
            "-sS",
            "--max-time",
            "600",
            "-T",
            "-",
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("{}/v1/objects/default/{path}", server.url))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let body = child.stdin.take().unwrap();
    (child, body)
}

/// Waits until `f` holds, up to 60 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn sighup_swaps_the_policy_while_a_stream_finishes_and_a_tampered_plugin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(run_in(d, &["plugin", "keygen", "--out", "k"]).status.success());
    std::fs::copy(stowage_tests::fixture("test_policy"), d.join("policy.wasm")).unwrap();
    assert!(run_in(d, &["plugin", "sign", "--key", "k.key", "policy.wasm"]).status.success());
    let first = config(d, "allow");
    let server = Server::start(d);
    assert!(metric(d, &server, "stowage_config_info").contains(&first));

    // A 1 GiB upload, half sent before the reload and half after.
    let (stream, mut body) = streaming_put(d, &server, "big.bin");
    let mut sha = sha2::Sha256::new();
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut send = |n: usize, body: &mut std::process::ChildStdin| {
        for _ in 0..n {
            body.write_all(&chunk).unwrap();
            sha.update(&chunk);
        }
        body.flush().unwrap();
    };
    send(512, &mut body);
    assert_eq!(put(d, &server, "before.txt", &[]), "200", "the first policy allows everything");

    // The new config swaps the policy for one that needs a cohort; `stowage reload` sends
    // SIGHUP and reports the host's answer.
    let second = config(d, "require-cohort");
    let o = run_in(d, &["reload"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("serves config sha256 {second}")), "{}", stdout(&o));
    assert_eq!(put(d, &server, "after.txt", &[]), "403", "new requests use the new policy");
    assert_eq!(put(d, &server, "after.txt", &["-H", "x-stowage-cohort: c1"]), "200");

    // The stream that started on the old set finishes on it.
    send(512, &mut body);
    drop(body);
    let o = stream.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.ends_with("\n200"), "the stream did not complete: {out}");
    let want = hex::encode(sha.finalize());
    assert!(out.contains(&want), "stored sha256 is not the sent one: {out}");
    assert!(metric(d, &server, "stowage_config_reloads_total").ends_with(" 1"));

    // A tampered plugin: `stowage reload` refuses to send (its check is serve's), and a
    // SIGHUP sent anyway is refused by the host, which keeps serving the last good set.
    let mut bytes = std::fs::read(d.join("policy.wasm")).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(d.join("policy.wasm"), bytes).unwrap();
    let third = config(d, "allow");
    let o = run_in(d, &["reload"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was sent") && stderr(&o).contains("modified after signing"), "{}", stderr(&o));
    assert!(metric(d, &server, "stowage_config_reload_failures_total").ends_with(" 0"));
    let status = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    eventually("the refusal is counted", || metric(d, &server, "stowage_config_reload_failures_total").ends_with(" 1"));
    assert!(
        metric(d, &server, "stowage_config_info").contains(&second),
        "the refused config ({third}) is not in force"
    );
    assert_eq!(put(d, &server, "still.txt", &[]), "403", "the last good set (require-cohort) keeps serving");
    assert_eq!(put(d, &server, "still.txt", &["-H", "x-stowage-cohort: c1"]), "200");
    let status_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("ledger.sqlite.serve.json")).unwrap()).unwrap();
    assert_eq!(status_file["ok"], false);
    assert!(status_file["error"].as_str().unwrap().contains("modified after signing"), "{status_file}");
    assert_eq!(status_file["sha256"], second.as_str());
}

#[test]
fn a_reload_keeps_a_disks_quota_count_and_refuses_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A 1 MiB quota; no policies.
    let write = |extra: &str| {
        std::fs::write(
            d.join("stowage.toml"),
            format!(
                "role = \"services\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\nquota_gib = 0.0009765625\n\
                 [storage]\ndefault = \"local\"\n[ledger]\npath = \"ledger.sqlite\"\n[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n{extra}"
            ),
        )
        .unwrap();
    };
    write("");
    let server = Server::start(d);
    let auth = format!("Authorization: Bearer {KEY}");
    // 700 KiB of a write are in when the reload comes.
    let (first, mut body) = streaming_put(d, &server, "first.bin");
    body.write_all(&vec![1u8; 700 << 10]).unwrap();
    body.flush().unwrap();
    // The write has reached the host once the disk holds its temp object's bytes.
    eventually("the first write's bytes reach the disk", || {
        walk(&d.join("data")).iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum::<u64>() >= 600 << 10
    });
    let o = run_in(d, &["reload"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The same disk after the reload still counts the write in flight: 700 + 500 KiB is over.
    std::fs::write(d.join("second.bin"), vec![2u8; 500 << 10]).unwrap();
    let url = format!("{}/v1/objects/default/second.bin", server.url);
    let (status, body_text) = status_and_body(&curl(
        d,
        &["-X", "PUT", "-H", &auth, "--data-binary", "@second.bin", "-w", "\n%{http_code}", &url],
    ));
    assert_eq!(status, "507", "{body_text}");
    drop(body);
    let out = String::from_utf8_lossy(&first.wait_with_output().unwrap().stdout).to_string();
    assert!(out.ends_with("\n200"), "{out}");

    // New timeouts need a restart: refused, saying so, and the host serves on.
    write("[server.timeouts]\nheader_secs = 7\n");
    let o = run_in(d, &["reload"]);
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stderr(&o)
            .contains("[server.timeouts] or [server.limits] differs from the running host's: that needs a restart"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        status_and_body(&curl(
            d,
            &["-H", &auth, "-w", "\n%{http_code}", &format!("{}/v1/objects/default/first.bin", server.url)]
        ))
        .0,
        "200"
    );
    assert!(metric(d, &server, "stowage_config_reload_failures_total").ends_with(" 1"));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
