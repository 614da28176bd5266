//! Upload sessions that survive any host: on a disk whose driver suspends writes, a session's
//! state lives in the ledger's database and with the data, so a host killed mid-append and
//! started again, or another host on the same PostgreSQL database, continues it. Real
//! servers: `stowage serve` processes, SeaweedFS, PostgreSQL (initdb per test), curl.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use stowage_tests::postgres::Postgres;

use crate::serve::{KEY, Server, config, curl, status_and_body};

pub(crate) fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// Opens a session for `name` (the whole body's sha256 given); its URL path.
pub(crate) fn open(d: &Path, url: &str, name: &str, sha: &str) -> String {
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-H",
            &format!("x-stowage-sha256: {sha}"),
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{url}/v1/uploads/default/{name}"),
        ],
    );
    let head = crate::stdout(&o).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 201"), "{head}");
    let location = head.lines().find_map(|l| l.strip_prefix("location: ")).unwrap().trim().to_string();
    assert!(location.starts_with("/v1/upload-sessions/r"), "a durable session: {location}");
    location
}

/// The session's offset, as `url` answers.
pub(crate) fn offset(d: &Path, url: &str, session: &str) -> u64 {
    let h = crate::stdout(&curl(d, &["-I", "-H", &format!("Authorization: Bearer {KEY}"), &format!("{url}{session}")]))
        .to_ascii_lowercase();
    h.lines().find_map(|l| l.strip_prefix("upload-offset: ")).unwrap_or_else(|| panic!("{h}")).trim().parse().unwrap()
}

/// The status of a `HEAD` of the session.
fn head_status(d: &Path, url: &str, session: &str) -> String {
    let o = curl(
        d,
        &["-I", "-H", &format!("Authorization: Bearer {KEY}"), "-w", "\n%{http_code}", &format!("{url}{session}")],
    );
    status_and_body(&o).0
}

/// Appends `file` (in `d`) at `at`: the status and the offset answered.
pub(crate) fn append(d: &Path, url: &str, session: &str, file: &str, at: u64) -> (String, u64) {
    let o = curl(
        d,
        &[
            "-X",
            "PATCH",
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-H",
            &format!("upload-offset: {at}"),
            "--data-binary",
            &format!("@{file}"),
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{url}{session}"),
        ],
    );
    let head = crate::stdout(&o).to_ascii_lowercase();
    // The last status line (curl shows a `100 Continue` first).
    let status = head
        .lines()
        .rfind(|l| l.starts_with("http/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let at = head.lines().find_map(|l| l.strip_prefix("upload-offset: ")).map_or(0, |v| v.trim().parse().unwrap());
    (status, at)
}

/// Starts an append of `file` at `at` sending 1 MB/s, for a host to be killed under it.
fn slow_append(d: &Path, url: &str, session: &str, file: &str, at: u64) -> std::process::Child {
    Command::new("curl")
        .current_dir(d)
        .args(["-sS", "-X", "PATCH", "-H", &format!("Authorization: Bearer {KEY}")])
        .args(["-H", &format!("upload-offset: {at}"), "--limit-rate", "1M", "--data-binary", &format!("@{file}")])
        .arg(format!("{url}{session}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Completes the session; the status.
pub(crate) fn complete(d: &Path, url: &str, session: &str) -> String {
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-w",
            "\n%{http_code}",
            &format!("{url}{session}/complete"),
        ],
    );
    let (status, body) = status_and_body(&o);
    assert_eq!(status, "200", "{body}");
    status
}

pub(crate) fn get(d: &Path, url: &str, name: &str) -> (String, Vec<u8>) {
    let out = d.join("got.bin");
    let o = curl(
        d,
        &[
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-o",
            out.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &format!("{url}/v1/objects/default/{name}"),
        ],
    );
    (crate::stdout(&o), std::fs::read(&out).unwrap_or_default())
}

/// Waits until `grew` says the killed-for append reached the host.
fn wait_for(what: &str, grew: impl Fn() -> bool) {
    let started = Instant::now();
    while !grew() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what} never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_session_survives_kill_9_of_its_host_mid_append_and_completes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    // Every temp object is old enough to be an orphan: the sweeps (at each start, and
    // `cleanup`'s) must still leave the session's alone.
    let text = std::fs::read_to_string(d.join("stowage.toml"))
        .unwrap()
        .replace("[storage]", "orphan_after_secs = 0\n[storage]");
    std::fs::write(d.join("stowage.toml"), text).unwrap();
    let whole = data(6 << 20, 1);
    let sha = hex::encode(sha2::Sha256::digest(&whole));
    std::fs::write(d.join("first.bin"), &whole[..2 << 20]).unwrap();
    std::fs::write(d.join("rest.bin"), &whole[2 << 20..]).unwrap();
    let server = Server::start(d);
    let session = open(d, &server.url, "big.bin", &sha);
    assert_eq!(append(d, &server.url, &session, "first.bin", 0), ("204".into(), 2 << 20));
    let o = crate::run_in(d, &["cleanup"]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(
        !crate::stdout(&o).contains("temp object"),
        "the sweep removed a live session's temp file: {}",
        crate::stdout(&o)
    );

    // The second append is cut by a SIGKILL of the host while its bytes stream in.
    let temp_bytes = || -> u64 {
        std::fs::read_dir(d.join("data/.stowage-tmp"))
            .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    };
    let mut cut = slow_append(d, &server.url, &session, "rest.bin", 2 << 20);
    wait_for("the second append reaching the host", || temp_bytes() > (2 << 20) + (1 << 20));
    drop(server);
    let _ = cut.kill();
    let _ = cut.wait();

    // Started again: the session is there, at the last recorded offset, and nothing is visible.
    let server = Server::start(d);
    assert_eq!(offset(d, &server.url, &session), 2 << 20, "the cut append's bytes are not counted");
    assert_eq!(get(d, &server.url, "big.bin").0, "404");
    // A wrong offset is refused with the right one; the right one continues (the dead host's
    // hold on the session is taken over at once).
    assert_eq!(append(d, &server.url, &session, "rest.bin", 1), ("409".into(), 2 << 20));
    let started = Instant::now();
    assert_eq!(append(d, &server.url, &session, "rest.bin", 2 << 20), ("204".into(), 6 << 20));
    assert!(started.elapsed() < Duration::from_secs(20), "waited for the dead host's lease");
    complete(d, &server.url, &session);
    let (status, got) = get(d, &server.url, "big.bin");
    assert_eq!(status, "200");
    assert!(got == whole, "the object differs from what was sent ({} bytes)", got.len());
    // Committed: the session is gone, and so is its temp file.
    assert!(head_status(d, &server.url, &session).ends_with("404"));
    assert_eq!(temp_bytes(), 0, "a temp file was left");
    assert!(d.join("ledger.sessions.sqlite").exists(), "the sessions live beside the ledger");
}

/// The config of a services host on `bucket` (SeaweedFS) whose ledger and sessions are in
/// PostgreSQL at `url`, named `host`. Every unfinished upload is old enough to be an orphan:
/// the sweep at each start must still leave the session's multipart upload alone.
fn shared_config(d: &Path, bucket: &str, url: &str, host: &str) {
    let s3 = stowage_tests::s3::server();
    std::fs::write(
        d.join("stowage.toml"),
        format!(
            "role = \"services\"\n[disks.nas]\nplugin = \"s3\"\ngrant = {{ endpoint = \"{e}\" }}\n\
             config = {{ endpoint = \"{e}\", bucket = \"{bucket}\", part_size_mib = 5, access_key_id = {{ env = \"TEST_S3_KEY\" }}, secret_access_key = {{ env = \"TEST_S3_SECRET\" }} }}\n\
             orphan_after_secs = 0\n\
             [storage]\ndefault = \"nas\"\n[[policies]]\nplugin = \"phi-tracking\"\n\
             [ledger]\npath = \"ledger.sqlite\"\nurl = \"{url}\"\nhost = \"{host}\"\n\
             [server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n",
            e = s3.endpoint
        ),
    )
    .unwrap();
}

fn start_shared(d: &Path) -> Server {
    let s3 = stowage_tests::s3::server();
    Server::start_with_env(d, &[("TEST_S3_KEY", s3.access_key.as_str()), ("TEST_S3_SECRET", s3.secret_key.as_str())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_database_continue_each_others_sessions_and_one_killed_mid_append_loses_nothing() {
    let pg = Postgres::start();
    let url = pg.create_database("sessions");
    let bucket = stowage_tests::s3::fresh_bucket(&stowage_tests::s3::server(), "sessions").await;
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a_dir.path(), b_dir.path());
    shared_config(a, &bucket, &url, "host-a");
    shared_config(b, &bucket, &url, "host-b");
    let (host_a, host_b) = (start_shared(a), start_shared(b));

    // 24 MiB in six segments of 4 MiB (parts are 5 MiB: every suspend keeps a tail), each to
    // the other host than the last.
    let whole = data(24 << 20, 7);
    let sha = hex::encode(sha2::Sha256::digest(&whole));
    for (i, seg) in whole.chunks(4 << 20).enumerate() {
        std::fs::write(a.join(format!("seg{i}")), seg).unwrap();
    }
    let session = open(a, &host_a.url, "shared.bin", &sha);
    for i in 0..4u64 {
        let host = if i % 2 == 0 { &host_b.url } else { &host_a.url };
        let at = i * (4 << 20);
        assert_eq!(offset(a, host, &session), at, "segment {i}: both hosts see the recorded offset");
        assert_eq!(append(a, host, &session, &format!("seg{i}"), at), ("204".into(), at + (4 << 20)), "segment {i}");
    }

    // Host B dies in the middle of segment 4; host A continues from the last recorded offset
    // (B's hold on the session is taken over at once: B was a process of this machine, which
    // A can see is gone; on another machine A would wait for B's lease to run out).
    let mut cut = slow_append(a, &host_b.url, &session, "seg4", 16 << 20);
    std::thread::sleep(Duration::from_millis(1500));
    drop(host_b);
    let _ = cut.kill();
    let _ = cut.wait();
    assert_eq!(offset(a, &host_a.url, &session), 16 << 20);
    assert_eq!(get(a, &host_a.url, "shared.bin").0, "404", "nothing partial is visible");
    let host_b = start_shared(b);
    for (i, host) in [(4u64, &host_a.url), (5, &host_b.url)] {
        let at = i * (4 << 20);
        assert_eq!(append(a, host, &session, &format!("seg{i}"), at), ("204".into(), at + (4 << 20)), "segment {i}");
    }
    complete(a, &host_a.url, &session);
    let (status, got) = get(a, &host_b.url, "shared.bin");
    assert_eq!(status, "200");
    assert!(got == whole, "the object differs from what was sent ({} bytes)", got.len());
    // Committed: the session is gone for both hosts, and from the database.
    assert!(head_status(a, &host_b.url, &session).ends_with("404"));
    let rows = pg.psql("sessions", "SELECT count(*) FROM stowage_upload_sessions");
    assert_eq!(rows.trim(), "0", "{rows}");
}

/// A web host's `remote` driver keeps its side of an upload in memory, and the services host's
/// session is durable: a services host killed mid-upload and started again within the driver's
/// retry budget loses nothing, and the client's one `PUT` completes, whole.
#[test]
fn a_web_hosts_upload_continues_across_kill_9_and_restart_of_its_services_host() {
    use crate::two_hosts::{KEY_ENV, WEB_KEY, free_port, services_config, web_config};
    let services = tempfile::tempdir().unwrap();
    let s = services.path();
    services_config(s, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let listen = format!("127.0.0.1:{}", free_port());
    let server = Server::start_on(s, &[], &listen);
    let web = tempfile::tempdir().unwrap();
    let w = web.path();
    let api_key = format!(", api_key = {{ env = \"{KEY_ENV}\" }}");
    let retries = ", max_attempts = 10, retry_budget_ms = 25000";
    web_config(w, &server.url, &api_key, retries, &format!("dev_mode = true\napi_keys = [\"{WEB_KEY}\"]\n"));
    // Retries for 25 s (the budget; 300 ms doubling to 5 s, with jitter): long enough for a
    // restart on a busy machine.
    let text = std::fs::read_to_string(w.join("stowage.toml")).unwrap();
    assert!(text.contains("backoff_ms = 50,"), "{text}");
    std::fs::write(w.join("stowage.toml"), text.replace("backoff_ms = 50,", "backoff_ms = 300,")).unwrap();
    let web_server = Server::start_with_env(w, &[(KEY_ENV, KEY)]);
    let want = stowage_tests::write_big_file(&w.join("big.bin"), 256);
    let auth = format!("Authorization: Bearer {WEB_KEY}");
    let obj = format!("{}/v1/objects/default/big.bin", web_server.url);
    let upload = Command::new("curl")
        .current_dir(w)
        .args(["-sS", "--max-time", "300", "--limit-rate", "100M", "-H", &auth, "-T", "big.bin"])
        .args(["-w", "\n%{http_code}", &obj])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let temp_bytes = || -> u64 {
        std::fs::read_dir(s.join("data/.stowage-tmp"))
            .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    };
    wait_for("64 MiB reaching the services host", || temp_bytes() > 64 << 20);
    drop(server);
    std::thread::sleep(Duration::from_millis(300));
    let _server = Server::start_on(s, &[], &listen);

    let (status, body) = status_and_body(&upload.wait_with_output().unwrap());
    assert_eq!(status, "200", "{body}");
    assert!(body.contains(&want), "{body}");
    assert_eq!(stowage_tests::sha256_file(&s.join("data/big.bin")), want);
    assert_eq!(temp_bytes(), 0, "a temp file was left");
}

/// The sessions' database (the ledger's PostgreSQL) stops mid-upload: an append is refused,
/// retryably, and changes nothing; once it is back the session goes on from its recorded
/// offset, without a restart of the host.
#[test]
fn a_session_whose_database_stops_refuses_appends_and_goes_on_once_it_is_back() {
    let pg = Postgres::start();
    let url = pg.create_database("stopped");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let text = std::fs::read_to_string(d.join("stowage.toml")).unwrap();
    let ledger = "[ledger]\npath = \"ledger.sqlite\"\n";
    assert!(text.contains(ledger), "{text}");
    let text = text.replace(ledger, &format!("{ledger}url = \"{url}\"\nlock_timeout_ms = 2000\n"));
    std::fs::write(d.join("stowage.toml"), text).unwrap();
    let whole = data(3 << 20, 9);
    let sha = hex::encode(sha2::Sha256::digest(&whole));
    std::fs::write(d.join("seg0"), &whole[..1 << 20]).unwrap();
    std::fs::write(d.join("seg1"), &whole[1 << 20..]).unwrap();
    let server = Server::start(d);
    let session = open(d, &server.url, "db.bin", &sha);
    assert_eq!(append(d, &server.url, &session, "seg0", 0), ("204".into(), 1 << 20));

    pg.stop();
    assert_eq!(append(d, &server.url, &session, "seg1", 1 << 20).0, "503");
    assert!(head_status(d, &server.url, &session).ends_with("503"));
    pg.start_again();
    wait_for("the session answering again", || head_status(d, &server.url, &session).ends_with("200"));
    assert_eq!(offset(d, &server.url, &session), 1 << 20, "the refused append changed the session");
    assert_eq!(append(d, &server.url, &session, "seg1", 1 << 20), ("204".into(), 3 << 20));
    complete(d, &server.url, &session);
    let (status, got) = get(d, &server.url, "db.bin");
    assert_eq!(status, "200");
    assert!(got == whole, "the object differs from what was sent");
}
