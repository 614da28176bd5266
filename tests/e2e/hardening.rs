//! `stowage serve` under hostile clients: stalled downloads, half-sent requests, idle
//! connections, a key that takes all upload sessions, a full disk, a storm of readiness probes.
//! Each repro of a way one client could stop the host, against a real server process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::serve::{KEY, Server, curl, status_and_body};
use crate::{run_in, stderr, stdout};

const KEY_B: &str = "other-key-0123456789abcdef0123456789abcd";
const URL_SECRET: &str = "url-secret-0123456789abcdef0123456789";

/// A services host with two named keys, a URL secret and `extra` (more tables).
fn config(d: &Path, disk_extra: &str, extra: &str) {
    let text = format!(
        "role = \"services\"\n[trust]\nallow_unsigned = true\nforce_allow_unsigned = true\n\
         [disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\n{disk_extra}\n\
         [storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"role-policy\"\n[[policies]]\nplugin = \"phi-tracking\"\n\
         [ledger]\npath = \"ledger.sqlite\"\n\
         [server]\ndev_mode = true\napi_keys = [{{ name = \"a\", key = \"{KEY}\" }}, {{ name = \"b\", key = \"{KEY_B}\" }}]\nurl_secret = \"{URL_SECRET}\"\n{extra}"
    );
    std::fs::write(d.join("stowage.toml"), text).unwrap();
}

/// Opens a connection and sends `request` (a raw HTTP/1.1 head), never reading.
fn send_only(url: &str, request: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s
}

/// Bytes the server sends on `s` before it closes it, reading for at most `limit`.
fn drain(s: &mut TcpStream, limit: Duration) -> (u64, bool) {
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (n, true),
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (n, true),
        }
    }
    (n, false)
}

/// One GET of the small object with key B: (status, time).
fn small_get(d: &Path, url: &str) -> (String, Duration) {
    let started = Instant::now();
    let o = curl(
        d,
        &[
            "-H",
            &format!("Authorization: Bearer {KEY_B}"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{url}/v1/objects/default/small.txt"),
        ],
    );
    (stdout(&o), started.elapsed())
}

#[test]
fn seventy_stalled_downloads_do_not_stop_other_clients_and_are_dropped_after_the_send_timeout() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, "", "[server.timeouts]\nsend_stall_secs = 3\n");
    stowage_tests::write_big_file(&d.join("big.bin"), 64);
    std::fs::write(d.join("small.txt"), "small\n").unwrap();
    for (addr, file) in [("default:big.bin", "big.bin"), ("default:small.txt", "small.txt")] {
        let o = run_in(d, &["put", addr, file]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run_in(d, &["url", "default:big.bin", "--expires", "600"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let signed = stdout(&o).trim().to_string();
    let server = Server::start(d);
    let signed_path = signed
        .split_once("127.0.0.1")
        .and_then(|(_, rest)| rest.split_once('/').map(|(_, p)| format!("/{p}")))
        .unwrap();

    for (what, head) in [
        (
            "with a key",
            format!("GET /v1/objects/default/big.bin HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\n\r\n"),
        ),
        ("through a signed URL", format!("GET {signed_path} HTTP/1.1\r\nHost: t\r\n\r\n")),
    ] {
        let started = Instant::now();
        let mut stalled: Vec<TcpStream> = (0..70).map(|_| send_only(&server.url, &head)).collect();
        // Let them fill their buffers and stall.
        std::thread::sleep(Duration::from_millis(500));
        let (status, took) = small_get(d, &server.url);
        assert_eq!(status, "200", "{what}");
        assert!(took < Duration::from_secs(2), "{what}: a small GET took {took:?} while 70 downloads stalled");
        // After the send timeout (3 s) the host drops them. The key's share of instances (48
        // of 64) serves them in two rounds (the rest wait for an instance, then stall too), so
        // read only once both rounds have timed out: each connection then ends (what the
        // kernel buffered, then EOF) well before its 64 MiB.
        std::thread::sleep(Duration::from_secs(10));
        for (i, s) in stalled.iter_mut().enumerate() {
            let (got, closed) = drain(s, Duration::from_secs(20));
            assert!(
                closed && got < 64 << 20,
                "{what}: stalled download {i} got {got} bytes and was {}closed",
                if closed { "" } else { "not " }
            );
        }
        assert!(started.elapsed() < Duration::from_secs(45), "{what}: took {:?}", started.elapsed());
        let (status, _) = small_get(d, &server.url);
        assert_eq!(status, "200", "{what}: the host serves after the stalled clients are gone");
    }
}

#[test]
fn a_half_sent_request_is_closed_after_the_header_timeout_and_idle_connections_do_not_stop_a_fresh_request() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, "", "[server.timeouts]\nheader_secs = 2\n");
    std::fs::write(d.join("small.txt"), "small\n").unwrap();
    assert!(run_in(d, &["put", "default:small.txt", "small.txt"]).status.success());
    let server = Server::start(d);
    let started = Instant::now();
    let mut half = send_only(&server.url, "GET /v1/objec");
    let (_, closed) = drain(&mut half, Duration::from_secs(15));
    let took = started.elapsed();
    assert!(
        closed && took >= Duration::from_millis(1500) && took < Duration::from_secs(15),
        "a half-sent request line was closed after {took:?} (closed: {closed})"
    );

    // A head larger than max_header_kib (64) is refused, not buffered.
    let mut huge = send_only(
        &server.url,
        &format!("GET /healthz HTTP/1.1\r\nHost: t\r\nx-big: {}\r\n\r\n", "a".repeat(100 << 10)),
    );
    huge.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = huge.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "a 100 KiB header: {:?}", answer.lines().next());

    let idle: Vec<TcpStream> =
        (0..1000).map(|_| TcpStream::connect(server.url.trim_start_matches("http://")).unwrap()).collect();
    let (status, took) = small_get(d, &server.url);
    assert_eq!(status, "200");
    assert!(took < Duration::from_secs(2), "a fresh request took {took:?} next to 1000 idle connections");
    let o = curl(d, &["-sS", "-o", "/dev/null", "-w", "%{http_code}", &format!("{}/healthz", server.url)]);
    assert_eq!(stdout(&o), "200");
    drop(idle);
}

#[test]
fn upload_sessions_belong_to_their_key_and_one_key_cannot_take_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(stowage_tests::fixture("misbehaving_driver"), d.join("slow.wasm")).unwrap();
    config(
        d,
        "[disks.slow]\nplugin = \"./slow.wasm\"\nlimits = { call_timeout_ms = 3000 }\n",
        "[server.limits]\nmax_uploads_per_key = 2\nmax_uploads = 10\n",
    );
    let server = Server::start(d);
    let open = |key: &str, path: &str| {
        let o = curl(
            d,
            &[
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {key}"),
                "-D",
                "-",
                "-o",
                "/dev/null",
                &format!("{}/v1/uploads/default/{path}", server.url),
            ],
        );
        let head = stdout(&o).to_ascii_lowercase();
        let location =
            head.lines().find_map(|l| l.strip_prefix("location: ")).map(|l| format!("{}{}", server.url, l.trim()));
        (head.lines().next().unwrap_or_default().to_string(), location)
    };
    // A client that goes away while its session opens (the driver is slow here) takes no slot.
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "--max-time",
            "1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/v1/uploads/slow/loop", server.url),
        ],
    );
    assert_eq!(stdout(&o), "000", "the client gave up before an answer");
    std::thread::sleep(Duration::from_secs(4));
    let (first, a1) = open(KEY, "a1.bin");
    let (second, _) = open(KEY, "a2.bin");
    assert!(
        first.starts_with("http/1.1 201") && second.starts_with("http/1.1 201"),
        "{first} / {second}: the abandoned open leaked a slot"
    );
    let (third, _) = open(KEY, "a3.bin");
    assert!(third.starts_with("http/1.1 429"), "key a past its own limit: {third}");
    let (b, b1) = open(KEY_B, "b1.bin");
    assert!(b.starts_with("http/1.1 201"), "key b opens while key a holds its maximum: {b}");
    // Key b cannot touch key a's session: to it, it does not exist.
    let a1 = a1.unwrap();
    let auth_b = format!("Authorization: Bearer {KEY_B}");
    for args in [
        vec!["-X", "PATCH", "-H", &auth_b, "-H", "upload-offset: 0", "--data-binary", "mallory"],
        vec!["-I", "-H", &auth_b],
        vec!["-X", "DELETE", "-H", &auth_b],
    ] {
        let mut a = args.clone();
        a.extend(["-o", "/dev/null", "-w", "%{http_code}", &a1]);
        assert_eq!(stdout(&curl(d, &a)), "404", "{args:?}");
    }
    let (status, _) =
        status_and_body(&curl(d, &["-X", "POST", "-H", &auth_b, "-w", "\n%{http_code}", &format!("{a1}/complete")]));
    assert_eq!(status, "404");
    // Key a still owns it.
    let offset = curl(d, &["-I", "-H", &format!("Authorization: Bearer {KEY}"), &a1]);
    assert!(stdout(&offset).to_ascii_lowercase().contains("upload-offset: 0"), "{}", stdout(&offset));
    assert!(b1.is_some());
}

#[test]
fn a_quota_or_size_limit_refuses_the_write_with_nothing_stored_and_the_ledger_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, "max_object_mib = 1\nquota_gib = 0.002\n", "");
    let server = Server::start(d);
    let auth = format!("Authorization: Bearer {KEY}");
    let put = |path: &str, file: &str| {
        status_and_body(&curl(
            d,
            &[
                "-X",
                "PUT",
                "-H",
                &auth,
                "--data-binary",
                &format!("@{file}"),
                "-w",
                "\n%{http_code}",
                &format!("{}/v1/objects/default/{path}", server.url),
            ],
        ))
    };
    let mib = vec![7u8; 1 << 20];
    std::fs::write(d.join("one.bin"), &mib).unwrap();
    std::fs::write(d.join("two.bin"), [mib.clone(), mib].concat()).unwrap();
    let (status, body) = put("big.bin", "two.bin");
    assert_eq!(status, "413", "{body}");
    assert!(body.contains("too-large"), "{body}");
    // 2 MiB quota: one 1 MiB object fits, a second, then a third does not.
    assert_eq!(put("a.bin", "one.bin").0, "200");
    assert_eq!(put("b.bin", "one.bin").0, "200");
    let (status, body) = put("c.bin", "one.bin");
    assert_eq!(status, "507", "{body}");
    assert!(body.contains("quota-exceeded") && body.contains("is full"), "{body}");
    assert!(!d.join("data/big.bin").exists() && !d.join("data/c.bin").exists(), "a refused write was stored");
    assert_eq!(crate::crash::temp_file_bytes(&d.join("data")), 0, "a refused write left its bytes");
    // An overwrite may reuse what it replaces; a delete gives it back.
    assert_eq!(put("a.bin", "one.bin").0, "200");
    assert_eq!(
        stdout(&curl(
            d,
            &[
                "-X",
                "DELETE",
                "-H",
                &auth,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}/v1/objects/default/b.bin", server.url)
            ]
        )),
        "204"
    );
    assert_eq!(put("c.bin", "one.bin").0, "200");
    let show = stdout(&run_in(d, &["ledger", "show"]));
    assert!(show.lines().any(|l| l.contains("creation_failed local:big.bin") && l.contains("too large")), "{show}");
    assert!(show.lines().any(|l| l.contains("creation_failed local:c.bin") && l.contains("is full")), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_readiness_checks_run_one_probe_and_leave_nothing() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, "", "[server.limits]\nreadiness_interval_secs = 30\n");
    let server = Server::start(d);
    let client = stowage_tests::s3::reqwest::Client::new();
    let url = format!("{}/readyz", server.url);
    let asks: Vec<_> = (0..1000)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let mut ok = 0;
    for a in asks {
        if a.await.unwrap().unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1000);
    let m = stdout(&curl(d, &["-H", &format!("Authorization: Bearer {KEY}"), &format!("{}/metrics", server.url)]));
    assert!(m.lines().any(|l| l == "stowage_readiness_probes_total 1"), "one probe for 1000 asks:\n{m}");
    let left: Vec<_> = walk(&d.join("data"));
    assert!(left.iter().all(|p| !p.contains("stowage-probe")), "probes left {left:?}");
}

/// Every file under `root`, as paths relative to it.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

/// `max_requests_per_key`: a key with that many requests in flight gets `429` with
/// `Retry-After` at once, other keys are served, and the key is served again once its
/// requests end.
#[test]
fn a_key_past_its_requests_in_flight_gets_429_and_other_keys_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(stowage_tests::fixture("misbehaving_driver"), d.join("slow.wasm")).unwrap();
    config(
        d,
        "[disks.slow]\nplugin = \"./slow.wasm\"\nlimits = { call_timeout_ms = 3000 }\n",
        "[server.limits]\nmax_requests_per_key = 2\n",
    );
    std::fs::write(d.join("small.txt"), "small\n").unwrap();
    assert!(run_in(d, &["put", "default:small.txt", "small.txt"]).status.success());
    let server = Server::start(d);
    // Two requests of key a that take the driver's whole call timeout (it spins on `loop`).
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (d, url) = (d.to_path_buf(), format!("{}/v1/objects/slow/loop", server.url));
            std::thread::spawn(move || {
                stdout(&curl(
                    &d,
                    &[
                        "-I",
                        "-H",
                        &format!("Authorization: Bearer {KEY}"),
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        &url,
                    ],
                ))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let o = curl(
        d,
        &[
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
            &format!("{}/v1/objects/default/small.txt", server.url),
        ],
    );
    let (status, body) = status_and_body(&o);
    assert_eq!(status, "429", "key a's third request: {body}");
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not queued: {:?}", started.elapsed());
    let lower = body.to_ascii_lowercase();
    assert!(
        lower.contains("retry-after: 1")
            && lower.contains("too-many-requests")
            && lower.contains("2 requests in flight"),
        "{body}"
    );
    let (status, took) = small_get(d, &server.url);
    assert_eq!(status, "200", "key b is served while key a is at its cap");
    assert!(took < Duration::from_secs(2), "key b waited {took:?}");
    for s in slow {
        assert_eq!(s.join().unwrap(), "500", "the spinning driver call ends at its timeout (a plugin fault)");
    }
    let o = curl(
        d,
        &[
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/v1/objects/default/small.txt", server.url),
        ],
    );
    assert_eq!(stdout(&o), "200", "key a is served again once its requests ended");
}

/// A data disk that really runs out of space (a small tmpfs, root only) under a quota above
/// it: the write fails with nothing visible and no temp bytes left, the ledger records the
/// failure, and the bytes the failed write reserved are given back (a failure does not eat
/// the quota).
#[test]
fn a_full_data_disk_refuses_the_write_leaves_nothing_and_gives_back_its_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A 6 MiB file system under a 7 MiB quota.
    config(d, &format!("quota_gib = {}\n", 7.0 / 1024.0), "");
    let _fs = crate::audit::Tmpfs::mount(&d.join("data"), "6M");
    let server = Server::start(d);
    let auth = format!("Authorization: Bearer {KEY}");
    let put = |path: &str, mib: f64| {
        let file = d.join(format!("{path}.src"));
        std::fs::write(&file, vec![9u8; (mib * 1048576.0) as usize]).unwrap();
        let file = file.to_str().unwrap().to_string();
        status_and_body(&curl(
            d,
            &[
                "-X",
                "PUT",
                "-H",
                &auth,
                "--data-binary",
                &format!("@{file}"),
                "-w",
                "\n%{http_code}",
                &format!("{}/v1/objects/default/{path}", server.url),
            ],
        ))
    };
    assert_eq!(put("a.bin", 4.0).0, "200");
    // 3 MiB more: the quota would take them (4 + 3 = 7), the disk cannot (about 2 MiB free).
    let (status, body) = put("b.bin", 3.0);
    assert_eq!(status, "507", "a write onto a full disk: {body}");
    assert!(body.contains("\"no-space\"") && body.contains("disk `local` has no space left"), "{body}");
    assert!(!d.join("data/b.bin").exists(), "a failed write is not visible");
    assert_eq!(crate::crash::temp_file_bytes(&d.join("data")), 0, "the failed write's bytes are gone");
    let show = stdout(&run_in(d, &["ledger", "show"]));
    assert!(show.lines().any(|l| l.contains("creation_failed local:b.bin") && l.contains("no space left")), "{show}");
    // With a.bin gone, 5.5 MiB fit on the disk and under the quota, but only if the ~2 MiB
    // the failed write had reserved were given back (5.5 + 2 > 7).
    assert_eq!(
        stdout(&curl(
            d,
            &[
                "-X",
                "DELETE",
                "-H",
                &auth,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}/v1/objects/default/a.bin", server.url)
            ]
        )),
        "204"
    );
    let (status, body) = put("c.bin", 5.5);
    assert_eq!(status, "200", "the failed write's reservation was not given back: {body}");
    let (status, body) = put("d.bin", 2.0);
    assert_eq!(status, "507", "5.5 + 2 MiB exceed the 7 MiB quota: {body}");
}
