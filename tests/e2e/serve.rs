//! `stowage serve`: the HTTP API, driven by curl (as the README shows it) against a real
//! `stowage` process on 127.0.0.1, over plain HTTP in development mode and over TLS with a
//! test CA made here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use crate::{run_in, stderr, stdout, stowage};

pub(crate) const KEY: &str = "test-key-0123456789abcdef0123456789abcdef";

/// A running `stowage serve`, stopped on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(dir: &Path) -> Server {
        Self::start_with_env(dir, &[])
    }

    /// Starts it with extra environment variables (secrets the config refers to).
    pub(crate) fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_on(dir, env, "127.0.0.1:0")
    }

    /// Starts it listening on `listen`.
    pub(crate) fn start_on(dir: &Path, env: &[(&str, &str)], listen: &str) -> Server {
        let mut child = stowage()
            .current_dir(dir)
            .envs(env.iter().copied())
            .args(["serve", "--listen", listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("stowage: serving on ")
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl with ARGS in `dir`; returns its output (`-w` puts the status on the last line).
pub(crate) fn curl(dir: &Path, args: &[&str]) -> Output {
    Command::new("curl")
        .current_dir(dir)
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)")
}

pub(crate) fn status_and_body(o: &Output) -> (String, String) {
    let out = stdout(o);
    if !o.status.success() {
        eprintln!("curl: {}", stderr(o));
    }
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    (status.to_string(), body.to_string())
}

fn config(dir: &Path, server: &str) {
    let text = format!(
        "role = \"services\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\n[storage]\ndefault = \"local\"\n\
         [[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n[server]\n{server}"
    );
    std::fs::write(dir.join("stowage.toml"), text).unwrap();
}

#[test]
fn the_http_api_works_with_curl_in_development_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("in.bin"), &data).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    let server = Server::start(d);
    let obj = format!("{}/v1/objects/default/cohort/in.bin", server.url);
    let auth = format!("Authorization: Bearer {KEY}");

    // PUT, verified against the sha256 the client sends, with metadata and a request id.
    let sha_header = format!("x-stowage-sha256: {sha}");
    let o = curl(
        d,
        &[
            "-X",
            "PUT",
            "-H",
            &auth,
            "-H",
            &sha_header,
            "-H",
            "x-stowage-meta-cohort: VACS",
            "-H",
            "content-type: application/octet-stream",
            "-H",
            "x-request-id: req-put-1",
            "--data-binary",
            "@in.bin",
            "-w",
            "\n%{http_code}",
            &obj,
        ],
    );
    let (status, body) = status_and_body(&o);
    assert_eq!(status, "200", "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((info["size"].as_u64(), info["sha256"].as_str()), (Some(300_000), Some(sha.as_str())), "{info}");
    assert_eq!(info["metadata"]["cohort"], "VACS");

    // GET whole and a range; HEAD.
    let o2 = Command::new("curl")
        .current_dir(d)
        .args(["-sS", "-H", &auth, "-o", "out.bin", "-w", "%{http_code}", &obj])
        .output()
        .unwrap();
    assert_eq!(stdout(&o2), "200");
    assert_eq!(std::fs::read(d.join("out.bin")).unwrap(), data);
    let o = Command::new("curl")
        .current_dir(d)
        .args(["-sS", "-H", &auth, "-H", "Range: bytes=100-199", "-D", "h.txt", "-o", "part.bin", &obj])
        .output()
        .unwrap();
    assert!(o.status.success());
    let h = std::fs::read_to_string(d.join("h.txt")).unwrap().to_ascii_lowercase();
    assert!(h.starts_with("http/1.1 206") && h.contains("content-range: bytes 100-199/300000"), "{h}");
    assert_eq!(std::fs::read(d.join("part.bin")).unwrap(), &data[100..200]);
    let o = curl(d, &["-I", "-H", &auth, &obj]);
    let h = stdout(&o).to_ascii_lowercase();
    assert!(
        h.contains(&format!("x-stowage-sha256: {sha}"))
            && h.contains("x-stowage-meta-cohort: vacs")
            && h.contains("content-length: 300000"),
        "{h}"
    );

    // Wrong or missing key: a bare 401.
    for args in [vec!["-H", "Authorization: Bearer wrong-key"], vec![]] {
        let mut a = args.clone();
        a.extend(["-w", "\n%{http_code}", obj.as_str()]);
        let (status, body) = status_and_body(&curl(d, &a));
        assert_eq!((status.as_str(), body.as_str()), ("401", ""));
    }

    // A body that does not match its sha256 stores nothing; create-only refuses to replace.
    let bad_sha = format!("x-stowage-sha256: {}", "0".repeat(64));
    let other = format!("{}/v1/objects/default/cohort/other.bin", server.url);
    let (status, body) = status_and_body(&curl(
        d,
        &["-X", "PUT", "-H", &auth, "-H", &bad_sha, "--data-binary", "garbage", "-w", "\n%{http_code}", &other],
    ));
    assert_eq!(status, "400", "{body}");
    assert!(body.contains("digest-mismatch"), "{body}");
    assert!(!d.join("data/cohort/other.bin").exists());
    let (status, _) = status_and_body(&curl(
        d,
        &["-X", "PUT", "-H", &auth, "-H", "If-None-Match: *", "--data-binary", "x", "-w", "\n%{http_code}", &obj],
    ));
    assert_eq!(status, "412");
    assert_eq!(
        std::fs::read(d.join("data/cohort/in.bin")).unwrap(),
        data,
        "a refused create-only write changed the object"
    );

    // Bad paths are refused with a reason.
    let (status, body) = status_and_body(&curl(
        d,
        &[
            "-H",
            &auth,
            "--path-as-is",
            "-w",
            "\n%{http_code}",
            &format!("{}/v1/objects/default/a/../../etc/passwd", server.url),
        ],
    ));
    assert_eq!(status, "400", "{body}");
    assert!(body.contains("invalid-path"), "{body}");
    // A range past the end: 416 with the size; a lower-case scheme is still a bearer key.
    let (status, body) = status_and_body(&curl(
        d,
        &[
            "-H",
            "authorization: bearer test-key-0123456789abcdef0123456789abcdef",
            "-H",
            "Range: bytes=300000-",
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
            &obj,
        ],
    ));
    assert_eq!(status, "416");
    // With the JSON error every failure has (schemathesis found it empty), and the size.
    assert!(
        body.contains("\"invalid-range\"") && body.to_ascii_lowercase().contains("content-range: bytes */"),
        "{body}"
    );

    // List, readiness, delete.
    let (status, body) = status_and_body(&curl(
        d,
        &["-H", &auth, "-w", "\n%{http_code}", &format!("{}/v1/list/default?prefix=cohort/", server.url)],
    ));
    assert_eq!(status, "200");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().map(|a| a.len()), Some(1), "{page}");
    let (status, body) = status_and_body(&curl(d, &["-w", "\n%{http_code}", &format!("{}/readyz", server.url)]));
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("\"local\":{") && body.contains("\"ok\":true"), "{body}");
    let (status, _) = status_and_body(&curl(d, &["-X", "DELETE", "-H", &auth, "-w", "\n%{http_code}", &obj]));
    assert_eq!(status, "204");
    let (status, _) = status_and_body(&curl(d, &["-H", &auth, "-w", "\n%{http_code}", &obj]));
    assert_eq!(status, "404");

    // Metrics: behind the key; names the host does not have do not become labels.
    let (status, _) = status_and_body(&curl(
        d,
        &["-H", &auth, "-w", "\n%{http_code}", &format!("{}/v1/objects/no-such-disk/x", server.url)],
    ));
    assert_eq!(status, "404");
    let metrics_url = format!("{}/metrics", server.url);
    let (status, _) = status_and_body(&curl(d, &["-w", "\n%{http_code}", &metrics_url]));
    assert_eq!(status, "401");
    let (status, m) = status_and_body(&curl(d, &["-H", &auth, "-w", "\n%{http_code}", &metrics_url]));
    assert_eq!(status, "200");
    for want in [
        "stowage_requests_total{operation=\"put\",name=\"default\",status=\"200\"} 1",
        "stowage_requests_total{operation=\"get\",name=\"default\",status=\"401\"} 2",
        "stowage_requests_total{operation=\"get\",name=\"unknown\",status=\"404\"} 1",
        "stowage_requests_total{operation=\"list\",name=\"default\",status=\"200\"} 1",
        "stowage_bytes_total{name=\"default\",direction=\"received\"} 300000",
        "stowage_bytes_total{name=\"default\",direction=\"sent\"} 300100",
        "stowage_plugin_restarts_total{disk=\"local\"} 0",
        "stowage_request_duration_seconds_count{operation=\"put\",name=\"default\"} 3",
    ] {
        assert!(m.lines().any(|l| l == want), "metrics lack the line {want}:\n{m}");
    }

    // The ledger recorded the upload under the client's request id.
    let ledger = stowage_runtime::ledger::Ledger::open(&d.join("ledger.sqlite"), Default::default()).unwrap();
    let entries = ledger.entries().unwrap();
    assert!(
        entries.iter().any(|e| e.record.request_id == "req-put-1" && e.record.action == "file_created"),
        "{entries:?}"
    );
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir`.
pub(crate) fn test_ca(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Subject names must differ, or the leaf looks self-signed.
    ca.distinguished_name.push(DnType::CommonName, "Stowage test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// A client that opens connections and never finishes the TLS handshake (nothing sent, or
/// half a ClientHello) is dropped after `tls_handshake_secs`, and a real client is served
/// meanwhile.
#[test]
fn clients_that_never_finish_the_tls_handshake_are_dropped_and_stop_no_one() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    test_ca(d);
    config(
        d,
        &format!(
            "api_keys = [\"{KEY}\"]\ntls = {{ cert = \"server.pem\", key = \"server.key\" }}\n[server.timeouts]\ntls_handshake_secs = 5\n"
        ),
    );
    let server = Server::start(d);
    let addr = server.url.trim_start_matches("https://").to_string();
    let started = Instant::now();
    // 200 silent connections and 200 that send the first bytes of a ClientHello.
    let mut stuck: Vec<std::net::TcpStream> = (0..400)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            if i % 2 == 1 {
                s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
            }
            s
        })
        .collect();
    let ca = d.join("ca.pem");
    let asked = Instant::now();
    let o = curl(
        d,
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/healthz", server.url),
        ],
    );
    assert_eq!(stdout(&o), "200", "a real client is served while 400 handshakes hang");
    // Well under the handshake timeout: it did not wait for the stuck ones to be dropped.
    assert!(asked.elapsed() < Duration::from_secs(3), "the real client waited {:?}", asked.elapsed());
    for (i, s) in stuck.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        // The host closes it: EOF (or a reset) rather than the read timing out.
        let r = s.read(&mut buf);
        assert!(
            !matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "connection {i} was still open after {:?}",
            started.elapsed()
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(15),
        "stuck handshakes were dropped after {took:?} (timeout 5 s)"
    );
}

#[test]
fn tls_with_a_test_ca_and_plain_http_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    test_ca(d);
    config(d, "api_keys = [{ env = \"TEST_API_KEY\" }]\ntls = { cert = \"server.pem\", key = \"server.key\" }\n");
    let server = Server::start_with_env(d, &[("TEST_API_KEY", KEY)]);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let ca = d.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let auth = format!("Authorization: Bearer {KEY}");
    let obj = format!("{}/v1/objects/default/t.txt", server.url);
    let (status, body) = status_and_body(&curl(
        d,
        &["--cacert", ca, "-X", "PUT", "-H", &auth, "--data-binary", "over tls", "-w", "\n%{http_code}", &obj],
    ));
    assert_eq!(status, "200", "{body}");
    let (status, body) = status_and_body(&curl(d, &["--cacert", ca, "-H", &auth, "-w", "\n%{http_code}", &obj]));
    assert_eq!((status.as_str(), body.as_str()), ("200", "over tls"));
    let (status, _) =
        status_and_body(&curl(d, &["--cacert", ca, "-H", "Authorization: Bearer wrong", "-w", "\n%{http_code}", &obj]));
    assert_eq!(status, "401");
    // Without the CA the certificate is not trusted; plain HTTP to the TLS port gets nothing.
    assert!(!curl(d, &[&obj]).status.success());
    let plain = obj.replace("https://", "http://");
    let o = curl(d, &["-H", &auth, "-w", "\n%{http_code}", &plain]);
    assert!(!o.status.success() || !stdout(&o).ends_with("200"), "plain HTTP was served: {}", stdout(&o));
}

#[test]
fn serve_refuses_plain_http_short_keys_and_missing_keys_outside_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    test_ca(d);
    let tls = "tls = { cert = \"server.pem\", key = \"server.key\" }\n";
    for (server, want) in [
        (format!("api_keys = [\"{KEY}\"]\n"), "plain HTTP is refused outside development"),
        (format!("api_keys = [\"short\"]\n{tls}"), "api_keys[0] is shorter than 32 characters"),
        (format!("api_keys = []\n{tls}"), "api_keys is empty"),
        (
            format!("api_keys = [{{ env = \"STOWAGE_TEST_UNSET_KEY\" }}]\n{tls}"),
            "environment variable `STOWAGE_TEST_UNSET_KEY` is not set",
        ),
        (format!("api_keys = [\"{KEY}\"]\ntls = {{ cert = \"missing.pem\", key = \"server.key\" }}\n"), "missing.pem"),
    ] {
        config(d, &server);
        let o = run_in(d, &["serve", "--listen", "127.0.0.1:0"]);
        assert_eq!(o.status.code(), Some(5), "{server}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{server}: {}", stderr(&o));
        assert!(!stderr(&o).contains(KEY), "a key leaked: {}", stderr(&o));
    }
}

#[test]
fn signed_urls_serve_until_they_expire_and_refuse_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\nurl_secret = {{ env = \"TEST_URL_SECRET\" }}\n"));
    std::fs::write(d.join("f.csv"), "id,age\n1,42\n").unwrap();
    assert!(run_in(d, &["put", "default:a b/f.csv", "f.csv"]).status.success());
    let secret = "url-secret-0123456789abcdef0123456789";
    let server = Server::start_with_env(d, &[("TEST_URL_SECRET", secret)]);
    let url_for = |addr: &str, expires: &str| {
        let o = stowage()
            .current_dir(d)
            .env("TEST_URL_SECRET", secret)
            .args(["url", addr, "--expires", expires])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        // `stowage url` names the configured listen address; the test server took a free port.
        let printed = stdout(&o).trim().to_string();
        let path = printed.split_once("/v1/").map(|(_, p)| format!("/v1/{p}")).unwrap();
        assert!(path.starts_with("/v1/signed/default/a%20b/f.csv?expires="), "{printed}");
        format!("{}{path}", server.url)
    };
    let url = url_for("default:a b/f.csv", "60");
    // No API key needed: the signature is the credential.
    let (status, body) = status_and_body(&curl(d, &["-w", "\n%{http_code}", &url]));
    assert_eq!((status.as_str(), body.as_str()), ("200", "id,age\n1,42\n"));
    // Tampered: another path, a longer expiry, a changed signature.
    let tampered = [
        url.replace("f.csv", "g.csv"),
        url.replacen("expires=", "expires=9", 1),
        format!("{}{}", &url[..url.len() - 1], if url.ends_with('0') { '1' } else { '0' }),
        url.split_once("&sig=").unwrap().0.to_string(),
    ];
    for bad in &tampered {
        let (status, body) = status_and_body(&curl(d, &["-w", "\n%{http_code}", bad]));
        assert_eq!((status.as_str(), body.as_str()), ("403", ""), "{bad}");
    }
    // Expired.
    let short = url_for("default:a b/f.csv", "1");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (status, _) = status_and_body(&curl(d, &["-w", "\n%{http_code}", &short]));
    assert_eq!(status, "403");
    // No URL for an object that does not exist, and none without a secret.
    let o =
        stowage().current_dir(d).env("TEST_URL_SECRET", secret).args(["url", "default:missing.csv"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    config(d, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let o = run_in(d, &["url", "default:a b/f.csv"]);
    assert!(!o.status.success() && stderr(&o).contains("[server] url_secret is not set"), "{}", stderr(&o));
}

#[test]
fn a_resumable_upload_survives_a_dropped_connection_and_commits_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(d.join("big.bin"), &data).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    let server = Server::start(d);
    let auth = format!("Authorization: Bearer {KEY}");

    // Open a session (with the sha256 the whole body must have).
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            &format!("x-stowage-sha256: {sha}"),
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{}/v1/uploads/default/big.bin", server.url),
        ],
    );
    let head = stdout(&o).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 201") && head.contains("upload-offset: 0"), "{head}");
    let location = head.lines().find_map(|l| l.strip_prefix("location: ")).unwrap().trim().to_string();
    let session = format!("{}{location}", server.url);

    let offset = |d: &Path| -> u64 {
        let h = stdout(&curl(d, &["-I", "-H", &auth, &session])).to_ascii_lowercase();
        h.lines()
            .find_map(|l| l.strip_prefix("upload-offset: "))
            .unwrap_or_else(|| panic!("{h}"))
            .trim()
            .parse()
            .unwrap()
    };
    // The first append breaks off: the client (sending at 1 MB/s) is killed once the host has
    // taken some of it.
    let mut cut = Command::new("curl")
        .current_dir(d)
        .args([
            "-sS",
            "-X",
            "PATCH",
            "-H",
            &auth,
            "-H",
            "upload-offset: 0",
            "--limit-rate",
            "1M",
            "--data-binary",
            "@big.bin",
            &session,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while offset(d) == 0 {
        assert!(std::time::Instant::now() < deadline, "the append never reached the host");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cut.kill().unwrap();
    cut.wait().unwrap();
    // What was in flight lands; then the offset stands still.
    let mut got = offset(d);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = offset(d);
        if now == got {
            break;
        }
        got = now;
    }
    assert!(got > 0 && got < data.len() as u64, "offset after the broken append: {got}");
    // Nothing is visible yet.
    let (status, _) = status_and_body(&curl(
        d,
        &["-H", &auth, "-w", "\n%{http_code}", &format!("{}/v1/objects/default/big.bin", server.url)],
    ));
    assert_eq!(status, "404");
    // A wrong offset is refused with the right one.
    let (status, _) = status_and_body(&curl(
        d,
        &["-X", "PATCH", "-H", &auth, "-H", "upload-offset: 1", "--data-binary", "x", "-w", "\n%{http_code}", &session],
    ));
    assert_eq!(status, "409");

    // Continue from where it stopped, then complete.
    std::fs::write(d.join("rest.bin"), &data[got as usize..]).unwrap();
    let (status, _) = status_and_body(&curl(
        d,
        &[
            "-X",
            "PATCH",
            "-H",
            &auth,
            "-H",
            &format!("upload-offset: {got}"),
            "--data-binary",
            "@rest.bin",
            "-w",
            "\n%{http_code}",
            &session,
        ],
    ));
    assert_eq!(status, "204");
    assert_eq!(offset(d), data.len() as u64);
    let (status, body) =
        status_and_body(&curl(d, &["-X", "POST", "-H", &auth, "-w", "\n%{http_code}", &format!("{session}/complete")]));
    assert_eq!(status, "200", "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(std::fs::read(d.join("data/big.bin")).unwrap(), data);
    // The session is gone.
    let (status, _) = status_and_body(&curl(d, &["-I", "-H", &auth, "-w", "\n%{http_code}", &session]));
    assert!(status.ends_with("404"), "{status}");
}

/// A process's peak resident memory (VmHWM), in bytes.
pub(crate) fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

#[test]
fn one_gib_goes_through_the_api_with_bounded_server_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let want = stowage_tests::write_big_file(&d.join("big.bin"), 1024);
    let server = Server::start(d);
    let auth = format!("Authorization: Bearer {KEY}");
    let obj = format!("{}/v1/objects/default/big.bin", server.url);
    let (status, body) = status_and_body(&curl(
        d,
        &[
            "-X",
            "PUT",
            "-H",
            &auth,
            "-H",
            &format!("x-stowage-sha256: {want}"),
            "-T",
            "big.bin",
            "-w",
            "\n%{http_code}",
            &obj,
        ],
    ));
    assert_eq!(status, "200", "{body}");
    std::fs::remove_file(d.join("big.bin")).unwrap();
    let (status, _) = status_and_body(&curl(d, &["-H", &auth, "-o", "back.bin", "-w", "\n%{http_code}", &obj]));
    assert_eq!(status, "200");
    assert_eq!(stowage_tests::sha256_file(&d.join("back.bin")), want, "bytes read back differ");
    let peak = peak_rss(server.child.id());
    println!("stowage serve peak RSS over a 1 GiB upload and download: {} MiB", peak >> 20);
    assert!(peak < 150 << 20, "the server peaked at {} MiB", peak >> 20);
}
