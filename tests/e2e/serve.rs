//! `stowage serve`: the HTTP API, driven by curl (as the README shows it) against a real
//! `stowage` process on 127.0.0.1, over plain HTTP in development mode and over TLS with a
//! test CA made here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use crate::{stderr, stdout, stowage};

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
        let mut cmd = stowage();
        cmd.current_dir(dir).envs(env.iter().copied()).args(["serve", "--listen", listen]);
        Self::spawn(cmd)
    }

    /// Runs `cmd` (a `stowage serve` command line) and waits for the address it serves on.
    pub(crate) fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
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

pub(crate) fn config(dir: &Path, server: &str) {
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
