//! Two hosts under faults: 1 GiB through a web host that keeps nothing on disk, a connection
//! cut mid-upload and resumed, SIGKILL of the services host, a services host that stops reading,
//! a client that goes away mid-upload.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::serve::{KEY, Server, curl, peak_rss, status_and_body};
use crate::{stderr, stdout, stowage};

use crate::two_hosts::{KEY_ENV, WEB_KEY, free_port, services_config, web_config};

/// Total bytes of the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() { bytes_under(&entry.path()) } else { meta.len() };
    }
    total
}

#[test]
fn one_gib_streams_through_a_web_host_that_keeps_nothing_on_disk() {
    let services = tempfile::tempdir().unwrap();
    services_config(services.path(), &format!("dev_mode = true\napi_keys = [{{ env = \"{KEY_ENV}\" }}]\n"));
    let server = Server::start_with_env(services.path(), &[(KEY_ENV, KEY)]);
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    let web_tmp = w.join("tmp");
    std::fs::create_dir(&web_tmp).unwrap();
    web_config(
        w,
        &server.url,
        &format!(", api_key = {{ env = \"{KEY_ENV}\" }}"),
        "",
        &format!("dev_mode = true\napi_keys = [\"{WEB_KEY}\"]\n"),
    );
    let client = tempfile::tempdir().unwrap();
    let c = client.path();
    let want = stowage_tests::write_big_file(&c.join("big.bin"), 1024);
    let web_server = Server::start_with_env(w, &[(KEY_ENV, KEY), ("TMPDIR", web_tmp.to_str().unwrap())]);
    let before = bytes_under(w);
    // What the web host's process has written to storage, anywhere (an unlinked temp file
    // would not show in its directory, but shows here).
    let written = |pid: u32| -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
        io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).unwrap().trim().parse().unwrap()
    };
    let written_before = written(web_server.child.id());

    // Watch the web host's directory (its config dir, ledger and TMPDIR) while the upload runs.
    let done = Arc::new(AtomicBool::new(false));
    let grew = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, grew, w) = (done.clone(), grew.clone(), w.to_path_buf());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                grew.fetch_max(bytes_under(&w).saturating_sub(before), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let auth = format!("Authorization: Bearer {WEB_KEY}");
    let obj = format!("{}/v1/objects/submission/big.bin", web_server.url);
    let o = curl(
        c,
        &[
            "--max-time",
            "300",
            "-X",
            "PUT",
            "-H",
            &auth,
            "-H",
            "x-stowage-cohort: VACS",
            "-T",
            "big.bin",
            "-w",
            "\n%{http_code}",
            &obj,
        ],
    );
    done.store(true, Ordering::Release);
    watcher.join().unwrap();
    let (status, body) = status_and_body(&o);
    assert_eq!(status, "200", "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["sha256"].as_str(), Some(want.as_str()), "{info}");
    // The bytes are on the services host; the web host's files grew by no more than its
    // ledger's few records.
    assert_eq!(stowage_tests::sha256_file(&services.path().join("data/big.bin")), want);
    let grew = grew.load(Ordering::Acquire);
    assert!(grew < 1 << 20, "the web host's directory grew by {grew} bytes during the upload");
    let wrote = written(web_server.child.id()) - written_before;
    assert!(wrote < 4 << 20, "the web host's process wrote {wrote} bytes to storage during a 1 GiB upload");
    std::fs::remove_file(c.join("big.bin")).unwrap();

    // And back through the web host.
    let (status, _) =
        status_and_body(&curl(c, &["--max-time", "300", "-H", &auth, "-o", "back.bin", "-w", "\n%{http_code}", &obj]));
    assert_eq!(status, "200");
    assert_eq!(stowage_tests::sha256_file(&c.join("back.bin")), want);
    let peak = peak_rss(web_server.child.id());
    println!("web host peak RSS over a 1 GiB upload and download through it: {} MiB", peak >> 20);
    assert!(peak < 150 << 20, "the web host peaked at {} MiB", peak >> 20);

    // Both ledgers recorded the upload under one request id, each from its own side.
    let web_ledger =
        stowage_runtime::ledger::Ledger::open(&w.join("ledger.sqlite"), Default::default()).unwrap().entries().unwrap();
    let services_ledger =
        stowage_runtime::ledger::Ledger::open(&services.path().join("ledger.sqlite"), Default::default())
            .unwrap()
            .entries()
            .unwrap();
    let created = |entries: &[stowage_runtime::ledger::Entry]| {
        entries
            .iter()
            .find(|e| e.record.action == "file_created" && e.record.path == "big.bin")
            .map(|e| (e.record.request_id.clone(), e.record.cohort.clone()))
    };
    let (web_id, web_cohort) = created(&web_ledger).expect("the web host's ledger has the upload");
    let (services_id, services_cohort) = created(&services_ledger).expect("the services host's ledger has the upload");
    assert_eq!(web_id, services_id);
    assert_eq!((web_cohort.as_deref(), services_cohort.as_deref()), (Some("VACS"), Some("VACS")));
}

/// A TCP proxy on loopback that forwards to `to`, and cuts the first connection after it has
/// carried `cut_after` bytes towards `to`. Counts connections.
struct CuttingProxy {
    port: u16,
    connections: Arc<AtomicUsize>,
    cut: Arc<AtomicBool>,
    /// Bytes carried towards `to` by the connections after the first.
    later_bytes: Arc<AtomicU64>,
}

impl CuttingProxy {
    fn start(to: u16, cut_after: u64) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let later_bytes = Arc::new(AtomicU64::new(0));
        let (n, cut2, later2) = (connections.clone(), cut.clone(), later_bytes.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                let first = n.fetch_add(1, Ordering::AcqRel) == 0;
                let limit = if first { cut_after } else { u64::MAX };
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (cut3, later3) = (cut2.clone(), later2.clone());
                let count = if first { Arc::new(AtomicU64::new(0)) } else { later3 };
                std::thread::spawn(move || pipe(client, upstream, limit, &cut3, &count));
                std::thread::spawn(move || pipe(u2, c2, u64::MAX, &AtomicBool::new(false), &AtomicU64::new(0)));
            }
        });
        CuttingProxy { port, connections, cut, later_bytes }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, limit: u64, cut: &AtomicBool, count: &AtomicU64) {
    let mut buf = vec![0u8; 64 << 10];
    let mut carried = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if carried + n as u64 > limit {
            cut.store(true, Ordering::Release);
            break;
        }
        carried += n as u64;
        count.fetch_add(n as u64, Ordering::AcqRel);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn an_upload_resumes_after_the_connection_to_the_services_host_breaks() {
    let services = tempfile::tempdir().unwrap();
    services_config(services.path(), &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let server = Server::start(services.path());
    let services_port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    // The first connection breaks 20 MiB into the upload (in the third 8 MiB segment).
    let proxy = CuttingProxy::start(services_port, 20 << 20);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    web_config(w, &url, &format!(", api_key = {{ env = \"{KEY_ENV}\" }}"), ", segment_mib = 8", "dev_mode = true\n");
    let want = stowage_tests::write_big_file(&w.join("big.bin"), 48);
    let o = stowage().current_dir(w).env(KEY_ENV, KEY).args(["put", "default:big.bin", "big.bin"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(proxy.cut.load(Ordering::Acquire), "the proxy never cut the connection");
    assert!(proxy.connections.load(Ordering::Acquire) >= 2, "no second connection after the cut");
    // Resumed, not restarted: after the cut, only the rest of the broken segment and the
    // segments after it went out again (about 28 of the 48 MiB).
    let later = proxy.later_bytes.load(Ordering::Acquire);
    assert!(later < 36 << 20, "{later} bytes were sent after the cut: the upload started over");
    assert_eq!(stowage_tests::sha256_file(&services.path().join("data/big.bin")), want);
}

#[test]
fn kill_9_of_the_services_host_mid_upload_fails_retryably_and_a_retry_completes() {
    let services = tempfile::tempdir().unwrap();
    let s = services.path();
    services_config(s, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start_on(s, &[], &listen);
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    web_config(
        w,
        &server.url,
        &format!(", api_key = {{ env = \"{KEY_ENV}\" }}"),
        ", max_attempts = 3",
        &format!("dev_mode = true\napi_keys = [\"{WEB_KEY}\"]\n"),
    );
    let web_server = Server::start_with_env(w, &[(KEY_ENV, KEY)]);
    let client = tempfile::tempdir().unwrap();
    let c = client.path();
    let want = stowage_tests::write_big_file(&c.join("big.bin"), 1024);
    let auth = format!("Authorization: Bearer {WEB_KEY}");
    let obj = format!("{}/v1/objects/default/big.bin", web_server.url);
    let services_obj = format!("{}/v1/objects/default/big.bin", server.url);
    let services_auth = format!("Authorization: Bearer {KEY}");

    // The upload, in the background, with a bounded rate so that it is surely in flight.
    let upload = std::process::Command::new("curl")
        .current_dir(c)
        .args([
            "-sS",
            "--max-time",
            "300",
            "--limit-rate",
            "200M",
            "-X",
            "PUT",
            "-H",
            &auth,
            "-T",
            "big.bin",
            "-w",
            "\n%{http_code}",
            &obj,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the services host holds a good part of it (in its temp files), checking all
    // the while that no object is visible there.
    let started = Instant::now();
    loop {
        let (status, _) =
            status_and_body(&curl(c, &["-I", "-H", &services_auth, "-w", "\n%{http_code}", &services_obj]));
        assert!(status.ends_with("404"), "a partial object was visible on the services host: {status}");
        if bytes_under(&s.join("data")) > 100 << 20 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the upload never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    // kill -9, and back on the same port.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let killed_at = Instant::now();
    let out = upload.wait_with_output().unwrap();
    let (status, body) = status_and_body(&out);
    assert_eq!(status, "503", "{body}");
    assert!(body.contains("\"unavailable\""), "{body}");
    assert!(killed_at.elapsed() < Duration::from_secs(60), "the client waited {:?}", killed_at.elapsed());
    drop(server);
    let server = Server::start_on(s, &[], &listen);
    assert!(!s.join("data/big.bin").exists(), "a partial object is on the services host's disk");
    let (status, _) = status_and_body(&curl(c, &["-I", "-H", &services_auth, "-w", "\n%{http_code}", &services_obj]));
    assert!(status.ends_with("404"), "{status}");

    // The client sends it again: it completes, whole.
    let (status, body) = status_and_body(&curl(
        c,
        &["--max-time", "300", "-X", "PUT", "-H", &auth, "-T", "big.bin", "-w", "\n%{http_code}", &obj],
    ));
    assert_eq!(status, "200", "{body}");
    assert_eq!(stowage_tests::sha256_file(&s.join("data/big.bin")), want);
    drop(server);
}

#[test]
fn a_services_host_that_stops_reading_fails_the_upload_retryably_in_time_and_the_web_host_keeps_serving() {
    // Accepts, takes a few KiB (a small receive buffer), and never reads again.
    let mut stall = std::process::Command::new("python3")
        .args(["-c", "import socket, sys, time\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)\ns.bind(('127.0.0.1', 0))\ns.listen(16)\nprint(s.getsockname()[1], flush=True)\nconns = []\nwhile True:\n    c, _ = s.accept()\n    conns.append(c)\n"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stall.stdout.take().unwrap()), &mut line).unwrap();
    // Stopped however the test ends (a leftover would hold the test's output open).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _stall = Killed(stall);
    let url = format!("http://127.0.0.1:{}", line.trim());
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    // The remote driver would wait for an answer up to 60 s; the host bounds each call at 3 s.
    web_config(
        w,
        &url,
        "",
        ", timeout_ms = 60000, retry_budget_ms = 60000, max_attempts = 1",
        &format!("dev_mode = true\napi_keys = [\"{WEB_KEY}\"]\n"),
    );
    let text = std::fs::read_to_string(w.join("stowage.toml"))
        .unwrap()
        .replace("config = {", "limits = { call_timeout_ms = 3000 }\nconfig = {");
    std::fs::write(w.join("stowage.toml"), text).unwrap();
    let web_server = Server::start(w);
    std::fs::write(w.join("big.bin"), vec![9u8; 6 << 20]).unwrap();
    let auth = format!("Authorization: Bearer {WEB_KEY}");
    let upload = {
        let (auth, obj, w) = (auth.clone(), format!("{}/v1/objects/default/big.bin", web_server.url), w.to_path_buf());
        std::thread::spawn(move || {
            let started = Instant::now();
            let o = curl(
                &w,
                &[
                    "-X",
                    "PUT",
                    "-H",
                    &auth,
                    "-H",
                    "Expect:",
                    "--data-binary",
                    "@big.bin",
                    "-D",
                    "-",
                    "-o",
                    "/dev/null",
                    &obj,
                ],
            );
            (stdout(&o).to_ascii_lowercase(), started.elapsed())
        })
    };
    // Meanwhile the web host answers.
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..5 {
        let started = Instant::now();
        let o = curl(w, &["-o", "/dev/null", "-w", "%{http_code}", &format!("{}/healthz", web_server.url)]);
        assert_eq!(stdout(&o), "200");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "healthz took {:?} while an upload was stuck",
            started.elapsed()
        );
        let o =
            curl(w, &["-H", &auth, "-o", "/dev/null", "-w", "%{http_code}", &format!("{}/metrics", web_server.url)]);
        assert_eq!(stdout(&o), "200");
    }
    let (head, took) = upload.join().unwrap();
    assert!(head.starts_with("http/1.1 503") && head.lines().any(|l| l.trim_end() == "retry-after: 1"), "{head}");
    assert!(head.contains("x-stowage-error: unavailable"), "{head}");
    assert!(took < Duration::from_secs(20), "the stuck upload failed only after {took:?}");
}

/// Opens and at once discards an upload session on the services host with `key`: whether one
/// could be opened (`201`) or the key already holds its share (`429`), as the status.
fn probe_upload_session(dir: &Path, services: &str, key: &str) -> String {
    let auth = format!("Authorization: Bearer {key}");
    let (status, body) = status_and_body(&curl(
        dir,
        &["-X", "POST", "-H", &auth, "-w", "\n%{http_code}", &format!("{services}/v1/uploads/default/probe.bin")],
    ));
    if status == "201" {
        let opened: serde_json::Value = serde_json::from_str(&body).unwrap();
        let location = opened["location"].as_str().unwrap();
        let o = curl(dir, &["-X", "DELETE", "-H", &auth, "-w", "%{http_code}", &format!("{services}{location}")]);
        assert_eq!(stdout(&o), "204", "the probe session could not be discarded");
    }
    status
}

/// The remote driver's abort must cut the append still streaming before it discards the
/// session: the services host holds a session for its append until the body ends or idles out
/// (60 s), so a discard sent first waits past its own timeout and the session stays for the
/// hourly sweep.
#[test]
fn a_client_that_drops_its_upload_mid_segment_leaves_no_session_on_the_services_host() {
    let services = tempfile::tempdir().unwrap();
    let s = services.path();
    // One session per key: the probe's opens only once the web host's is gone.
    services_config(s, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\nlimits = {{ max_uploads_per_key = 1 }}\n"));
    let server = Server::start(s);
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    web_config(
        w,
        &server.url,
        &format!(", api_key = {{ env = \"{KEY_ENV}\" }}"),
        "",
        &format!("dev_mode = true\napi_keys = [\"{WEB_KEY}\"]\n"),
    );
    let web_server = Server::start_with_env(w, &[(KEY_ENV, KEY)]);

    // A 64 MiB PUT to the web host that stops after 20 MiB: in the third 8 MiB segment, whose
    // append is streaming to the services host when the client goes away.
    let authority = web_server.url.strip_prefix("http://").unwrap();
    let mut client = TcpStream::connect(authority).unwrap();
    write!(
        client,
        "PUT /v1/objects/default/big.bin HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {WEB_KEY}\r\nContent-Length: {}\r\n\r\n",
        64u64 << 20
    )
    .unwrap();
    let mib = vec![7u8; 1 << 20];
    for _ in 0..20 {
        client.write_all(&mib).unwrap();
    }
    let started = Instant::now();
    while bytes_under(&s.join("data")) < 18 << 20 {
        assert!(started.elapsed() < Duration::from_secs(60), "the third segment never reached the services host");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(probe_upload_session(s, &server.url, KEY), "429", "the probe does not see the web host's session");

    drop(client);
    let cut = Instant::now();
    loop {
        match probe_upload_session(s, &server.url, KEY).as_str() {
            "201" => break,
            "429" => {}
            other => panic!("the probe got {other}"),
        }
        assert!(
            cut.elapsed() < Duration::from_secs(5),
            "the services host still holds the dropped upload's session {:?} after the client went away",
            cut.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its bytes went with it.
    assert_eq!(bytes_under(&s.join("data")), 0, "the dropped upload left bytes on the services host");
}
