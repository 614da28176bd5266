//! `stowage serve` over TLS: a test CA made here, clients that never finish the handshake,
//! and what `serve` refuses outside development mode.

use std::path::Path;

use crate::serve::{KEY, Server, config, curl, status_and_body};
use crate::{run_in, stderr, stdout};

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
