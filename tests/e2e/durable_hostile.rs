//! Durable upload sessions against hostile clients: another key, a forged id, and a client
//! that stalls mid-append while it holds the session. A real `stowage serve` on local-fs with
//! its sessions in SQLite, raw TCP where curl would not misbehave enough.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::durable_uploads::{append, complete, data, get, offset, open};
use crate::serve::{KEY, Server, config, curl, status_and_body};

const OTHER: &str = "other-key-0123456789abcdef0123456789abcdef";

/// A services host on local-fs with two keys, `KEY` (named `a`) and `OTHER` (named `b`), and
/// `extra` after its `[server]` table.
fn start(d: &Path, extra: &str) -> Server {
    config(
        d,
        &format!(
            "dev_mode = true\napi_keys = [{{ name = \"a\", key = \"{KEY}\" }}, {{ name = \"b\", key = \"{OTHER}\" }}]\n{extra}"
        ),
    );
    Server::start(d)
}

/// The status of `method` on `url` with `key` (and `body`, if any).
fn status(d: &Path, key: &str, method: &str, url: &str, headers: &[&str], body: Option<&str>) -> String {
    let auth = format!("Authorization: Bearer {key}");
    // As sent: curl would otherwise resolve `..` itself.
    let mut args = if method == "HEAD" { vec!["--path-as-is", "-I"] } else { vec!["--path-as-is", "-X", method] };
    args.extend(["-H", &auth, "-o", "/dev/null", "-w", "%{http_code}"]);
    for h in headers {
        args.extend(["-H", h]);
    }
    if let Some(b) = body {
        args.extend(["--data-binary", b]);
    }
    args.push(url);
    crate::stdout(&curl(d, &args)).trim().to_string()
}

#[test]
fn a_durable_session_is_invisible_to_another_key_and_to_forged_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = start(d, "");
    let whole = data(3 << 20, 3);
    let sha = hex::encode(sha2::Sha256::digest(&whole));
    std::fs::write(d.join("first"), &whole[..1 << 20]).unwrap();
    std::fs::write(d.join("rest"), &whole[1 << 20..]).unwrap();
    let session = open(d, &server.url, "mine.bin", &sha);
    assert_eq!(append(d, &server.url, &session, "first", 0), ("204".into(), 1 << 20));

    // Another key learns nothing and changes nothing: every verb is `404`, as for no session.
    let url = format!("{}{session}", server.url);
    let at = format!("upload-offset: {}", 1 << 20);
    assert_eq!(status(d, OTHER, "HEAD", &url, &[], None), "404");
    assert_eq!(status(d, OTHER, "PATCH", &url, &[&at], Some("@rest")), "404");
    assert_eq!(status(d, OTHER, "POST", &format!("{url}/complete"), &[], None), "404");
    assert_eq!(status(d, OTHER, "DELETE", &url, &[], None), "404");
    // Ids nobody was given: well-formed but unknown, and malformed.
    for forged in [format!("r{}", "0".repeat(32)), format!("r{}", "g".repeat(32)), "r".into(), "../../etc".into()] {
        let url = format!("{}/v1/upload-sessions/{forged}", server.url);
        let head = status(d, KEY, "HEAD", &url, &[], None);
        assert!(head == "404" || head == "400", "HEAD {forged}: {head}");
        let patch = status(d, KEY, "PATCH", &url, &["upload-offset: 0"], Some("@rest"));
        assert!(patch == "404" || patch == "400", "PATCH {forged}: {patch}");
    }

    // The owner's session is as it was, and completes whole.
    assert_eq!(offset(d, &server.url, &session), 1 << 20);
    assert_eq!(append(d, &server.url, &session, "rest", 1 << 20), ("204".into(), 3 << 20));
    complete(d, &server.url, &session);
    let (code, got) = get(d, &server.url, "mine.bin");
    assert_eq!(code, "200");
    assert!(got == whole, "the object differs from what the owner sent");
}

#[test]
fn a_client_stalled_mid_append_holds_its_session_only_until_the_body_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = start(d, "[server.timeouts]\nbody_idle_secs = 6\n");
    let whole = data(2 << 20, 5);
    let sha = hex::encode(sha2::Sha256::digest(&whole));
    std::fs::write(d.join("rest"), &whole[512 << 10..]).unwrap();
    let session = open(d, &server.url, "stalled.bin", &sha);

    // A PATCH that announces 2 MiB, sends 512 KiB and then nothing, its connection held open.
    let addr = server.url.trim_start_matches("http://");
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stalled,
        "PATCH {session} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        whole.len()
    )
    .unwrap();
    stalled.write_all(&whole[..512 << 10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // Meanwhile the host serves everyone else at once, and the session's offset.
    let started = Instant::now();
    let (code, body) = status_and_body(&curl(
        d,
        &[
            "-X",
            "PUT",
            "-H",
            &format!("Authorization: Bearer {OTHER}"),
            "--data-binary",
            "other",
            "-w",
            "\n%{http_code}",
            &format!("{}/v1/objects/default/other.txt", server.url),
        ],
    ));
    assert_eq!(code, "200", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a put waited {:?} behind the stalled append",
        started.elapsed()
    );
    // Another key gets no answer about the held session but `404`, at once: it does not wait
    // for the session's turn (which would say the session exists).
    let url = format!("{}{session}", server.url);
    let started = Instant::now();
    assert_eq!(status(d, OTHER, "PATCH", &url, &["upload-offset: 0"], Some("@rest")), "404");
    assert_eq!(status(d, OTHER, "HEAD", &url, &[], None), "404");
    assert!(started.elapsed() < Duration::from_secs(3), "another key waited {:?}", started.elapsed());
    // The stalled append is still open: no answer yet.
    stalled.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending = std::io::Read::read(&mut stalled, &mut byte);
    assert!(
        pending.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the stalled append was answered already: {pending:?}"
    );
    // Another append to the same session by its owner waits its turn, which comes once the
    // stalled body has been idle for 6 s: what arrived is kept and recorded, so this one is
    // told where the session stands.
    let started = Instant::now();
    assert_eq!(append(d, &server.url, &session, "rest", 0), ("409".into(), 512 << 10));
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(15), "the stalled client held the session for {waited:?}");
    drop(stalled);

    assert_eq!(append(d, &server.url, &session, "rest", 512 << 10), ("204".into(), 2 << 20));
    complete(d, &server.url, &session);
    let (code, got) = get(d, &server.url, "stalled.bin");
    assert_eq!(code, "200");
    assert!(got == whole, "the object differs from what was sent");
}
