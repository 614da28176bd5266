//! `stowage serve`'s signed download URLs and resumable upload sessions, driven by curl.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::serve::{KEY, Server, config, curl, status_and_body};
use crate::{run_in, stderr, stdout, stowage};

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
    // The session is durable (local-fs suspends writes): its offset is recorded when the
    // append ends, so what reached the host is seen in the write's temp file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let in_temp = || -> u64 {
        std::fs::read_dir(d.join("data/.stowage-tmp"))
            .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    };
    while in_temp() == 0 {
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

#[test]
fn the_api_issues_download_urls_and_records_each_issue_under_the_callers_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\nurl_secret = {{ env = \"TEST_URL_SECRET\" }}\n"));
    std::fs::write(d.join("f.csv"), "id,age\n1,42\n").unwrap();
    assert!(run_in(d, &["put", "local:shared/f.csv", "f.csv"]).status.success());
    let server = Server::start_with_env(d, &[("TEST_URL_SECRET", "url-secret-0123456789abcdef0123456789")]);
    let auth = format!("Authorization: Bearer {KEY}");
    let issue = |query: &str| {
        status_and_body(&curl(
            d,
            &[
                "-X",
                "POST",
                "-H",
                &auth,
                "-w",
                "\n%{http_code}",
                &format!("{}/v1/urls/local/shared/f.csv{query}", server.url),
            ],
        ))
    };
    let (status, body) = issue("?expires_in_secs=120");
    assert_eq!(status, "200", "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["expires_in_secs"], 120);
    // The URL names this host as the client reached it, and serves without a key.
    let url = answer["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/v1/signed/local/shared/f.csv?", server.url)), "{url}");
    assert_eq!(status_and_body(&curl(d, &["-w", "\n%{http_code}", url])), ("200".into(), "id,age\n1,42\n".into()));
    // Out of range, or no object: refused, and nothing issued.
    assert_eq!(issue("?expires_in_secs=0").0, "400");
    assert_eq!(issue("?expires_in_secs=604801").0, "400");
    let (status, _) = status_and_body(&curl(
        d,
        &["-X", "POST", "-H", &auth, "-w", "\n%{http_code}", &format!("{}/v1/urls/local/nothing.csv", server.url)],
    ));
    assert_eq!(status, "404");
    drop(server);
    let export = run_in(d, &["ledger", "export", "--format", "json"]);
    let records: Vec<serde_json::Value> = serde_json::from_slice(&export.stdout).unwrap();
    let issued: Vec<_> = records.iter().filter(|r| r["action"] == "url_issued").collect();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["path"], "shared/f.csv");
    assert_eq!(issued[0]["expires_in_secs"], 120);
    assert!(issued[0]["key"].as_str().is_some_and(|k| !k.is_empty() && !k.starts_with("local:")), "{}", issued[0]);
}
