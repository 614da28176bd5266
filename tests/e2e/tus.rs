//! tus 1.0.0 on `stowage serve`, driven by the tus clients people use: tuspy (PyPI) and
//! tus-js-client (npm, on Node.js), both installed by `tests/run`. A client's success means the
//! object is stored with the right sha256, also when the connection breaks mid-upload and the
//! client resumes by itself; an upload that never completes leaves nothing visible.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::serve::{KEY, Server, config, curl, status_and_body};
use crate::{stderr, stdout};

const MIB: u64 = 1 << 20;

/// Uploads a file to a tus creation endpoint; the client's output.
type Client = fn(&str, &Path) -> Output;

fn tuspy(endpoint: &str, file: &Path) -> Output {
    let python = std::env::var("STOWAGE_TEST_TUSPY_PYTHON")
        .expect("STOWAGE_TEST_TUSPY_PYTHON is not set: run the tests with `tests/run`, which installs tuspy");
    let script = "import sys\n\
                  from tusclient import client\n\
                  endpoint, key, path = sys.argv[1:4]\n\
                  c = client.TusClient(endpoint, headers={'Authorization': 'Bearer ' + key})\n\
                  u = c.uploader(path, chunk_size=4 * 1024 * 1024, retries=5, retry_delay=0.5,\n\
                  \x20   metadata={'filename': 'big.bin', 'filetype': 'application/x-test'})\n\
                  u.upload()\n\
                  print(u.url)\n";
    Command::new(python).args(["-c", script, endpoint, KEY]).arg(file).output().expect("tuspy runs")
}

fn tus_js(endpoint: &str, file: &Path) -> Output {
    let modules = std::env::var("STOWAGE_TEST_TUS_JS_MODULES")
        .expect("STOWAGE_TEST_TUS_JS_MODULES is not set: run the tests with `tests/run`, which installs tus-js-client");
    let script = "const tus = require('tus-js-client'); const fs = require('fs');\n\
                  const [endpoint, key, path] = process.argv.slice(1);\n\
                  const upload = new tus.Upload(fs.createReadStream(path), {\n\
                  endpoint, headers: { Authorization: 'Bearer ' + key }, chunkSize: 4 * 1024 * 1024,\n\
                  uploadSize: fs.statSync(path).size, retryDelays: [0, 500, 1000, 2000],\n\
                  metadata: { filename: 'big.bin', filetype: 'application/x-test' },\n\
                  onError: (e) => { console.error('failed: ' + e); process.exit(1); },\n\
                  onSuccess: () => { console.log(upload.url); process.exit(0); } });\n\
                  upload.start();\n";
    Command::new("node")
        .env("NODE_PATH", modules)
        .args(["-e", script, endpoint, KEY])
        .arg(file)
        .output()
        .expect("node runs (.ci/run installs Node.js)")
}

/// The object's sha256 and content type as the host answers a HEAD (`None`: not there).
fn stored(d: &Path, server: &Server, path: &str) -> Option<(String, String)> {
    let auth = format!("Authorization: Bearer {KEY}");
    let o = curl(d, &["-I", "-H", &auth, &format!("{}/v1/objects/default/{path}", server.url)]);
    let head = stdout(&o).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return None;
    }
    let header =
        |name: &str| head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_string()));
    Some((header("x-stowage-sha256").unwrap_or_default(), header("content-type").unwrap_or_default()))
}

/// A host that allows one upload session per key (so a session left behind shows).
fn host() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n[server.limits]\nmax_uploads_per_key = 1\n"));
    let server = Server::start(dir.path());
    (dir, server)
}

#[test]
fn tus_clients_uploads_are_stored_whole_also_after_a_cut_connection() {
    let (dir, server) = host();
    let d = dir.path();
    let sha = stowage_tests::write_big_file(&d.join("big.bin"), 100);
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let clients: [(&str, Client); 2] = [("tuspy", tuspy), ("tus-js-client", tus_js)];
    for (name, client) in clients {
        // Straight, then through a proxy that cuts the first connection 30 MiB in.
        let proxy = CutOnce::start(port, 30 * MIB);
        for (how, base) in [("direct", server.url.clone()), ("cut", format!("http://127.0.0.1:{}", proxy.port))] {
            let path = format!("tus/{name}-{how}.bin");
            let o = client(&format!("{base}/v1/uploads/default/{path}"), &d.join("big.bin"));
            assert!(o.status.success(), "{name} {how}: {}{}", stdout(&o), stderr(&o));
            assert!(stdout(&o).contains("/v1/upload-sessions/"), "{name} {how}: {}", stdout(&o));
            let (got, content_type) = stored(d, &server, &path)
                .unwrap_or_else(|| panic!("{name} {how}: the client succeeded, the object is not there"));
            assert_eq!(got, sha, "{name} {how}");
            assert_eq!(content_type, "application/x-test", "{name} {how}: Upload-Metadata's filetype");
        }
        assert!(proxy.cut.load(Ordering::Acquire), "{name}: the proxy cut the connection");
        assert!(proxy.connections.load(Ordering::Acquire) >= 2, "{name} resumed on a new connection");
        // Resumed from the offset, not restarted: at most a chunk goes twice.
        let carried = proxy.carried.load(Ordering::Acquire);
        assert!(carried < 110 * MIB, "{name} sent {carried} bytes for a 100 MiB upload");
    }
}

#[test]
fn tus_protocol_edges_discovery_checksums_versions_lengths_and_termination() {
    let (dir, server) = host();
    let d = dir.path();
    let auth = format!("Authorization: Bearer {KEY}");
    let create = format!("{}/v1/uploads/default/edge/a.bin", server.url);

    // Discovery, without a key.
    let o = curl(d, &["-X", "OPTIONS", "-i", &create]);
    let head = stdout(&o).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 204"), "{head}");
    for want in ["tus-version: 1.0.0", "tus-resumable: 1.0.0", "tus-checksum-algorithm: sha256", "termination"] {
        assert!(head.contains(want), "{want}: {head}");
    }

    // Another version: 412.
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 0.2.2",
            "-H",
            "Upload-Length: 10",
            "-w",
            "\n%{http_code}",
            &create,
        ],
    );
    assert_eq!(status_and_body(&o).0, "412");
    // No Upload-Length: 400 naming it.
    let o = curl(d, &["-X", "POST", "-H", &auth, "-H", "Tus-Resumable: 1.0.0", "-w", "\n%{http_code}", &create]);
    let (status, body) = status_and_body(&o);
    assert_eq!(status, "400");
    assert!(body.contains("Upload-Length"), "{body}");

    // A 1000-byte upload: half of it, then a PATCH with a wrong checksum (460, nothing kept),
    // one past the length (400), and the object is not visible before the last byte.
    let o =
        curl(d, &["-X", "POST", "-H", &auth, "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Length: 1000", "-i", &create]);
    let head = stdout(&o);
    assert!(head.to_ascii_lowercase().contains("upload-expires:"), "{head}");
    let location = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("location:").then(|| l[9..].trim().to_string()))
        .expect("a Location");
    let session = format!("{}{location}", server.url);
    let patch = |offset: u64, body: &str, extra: &[&str]| {
        std::fs::write(d.join("part"), body).unwrap();
        let offset = format!("Upload-Offset: {offset}");
        let mut args = vec![
            "-X",
            "PATCH",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Content-Type: application/offset+octet-stream",
            "-H",
            &offset,
        ];
        for e in extra {
            args.extend(["-H", e]);
        }
        args.extend(["--data-binary", "@part", "-w", "\n%{http_code}", &session]);
        status_and_body(&curl(d, &args))
    };
    assert_eq!(patch(0, &"a".repeat(500), &[]).0, "204");
    assert!(stored(d, &server, "edge/a.bin").is_none(), "nothing is visible before the last byte");
    let wrong = "Upload-Checksum: sha256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    assert_eq!(patch(500, &"b".repeat(500), &[wrong]).0, "460");
    assert_eq!(patch(500, &"b".repeat(501), &[]).0, "400", "past Upload-Length");
    let o = curl(d, &["-I", "-H", &auth, "-H", "Tus-Resumable: 1.0.0", &session]);
    let head = stdout(&o).to_ascii_lowercase();
    assert!(
        head.contains("upload-offset: 500") && head.contains("upload-length: 1000"),
        "nothing of the refused bodies was kept: {head}"
    );
    // The right checksum, and the last byte commits: 204 only once it is stored.
    let b = "b".repeat(500);
    let good = format!("Upload-Checksum: sha256 {}", base64_sha256(b.as_bytes()));
    assert_eq!(patch(500, &b, &[&good]).0, "204");
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("{}{b}", "a".repeat(500)).as_bytes()));
    assert_eq!(stored(d, &server, "edge/a.bin").map(|s| s.0), Some(want));
    // Asked again (a client that lost the last answer), the session is whole.
    let o = curl(d, &["-I", "-H", &auth, "-H", "Tus-Resumable: 1.0.0", &session]);
    let head = stdout(&o).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("upload-offset: 1000"), "{head}");
    // A tus refusal says so, and which version is spoken.
    let o = curl(d, &["-I", "-H", &auth, "-H", "Tus-Resumable: 2.0.0", &session]);
    let head = stdout(&o).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 412")
            && head.contains("tus-version: 1.0.0")
            && head.contains("tus-resumable: 1.0.0"),
        "{head}"
    );

    // Termination: an upload abandoned halfway leaves nothing.
    let other = format!("{}/v1/uploads/default/edge/b.bin", server.url);
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 1000",
            "-H",
            "Content-Type: application/offset+octet-stream",
            "--data-binary",
            "half of it",
            "-i",
            &other,
        ],
    );
    let head = stdout(&o);
    assert!(head.to_ascii_lowercase().contains("upload-offset: 10"), "creation-with-upload kept the body: {head}");
    let location = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("location:").then(|| l[9..].trim().to_string()))
        .unwrap();
    let o = curl(
        d,
        &[
            "-X",
            "DELETE",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 1.0.0",
            "-w",
            "%{http_code}",
            &format!("{}{location}", server.url),
        ],
    );
    assert_eq!(stdout(&o), "204");
    assert!(stored(d, &server, "edge/b.bin").is_none());
    // Creation-with-upload whose body is the whole upload: stored at once. One whose body runs
    // past its length: refused, and the session (whose Location the client never learned) is
    // gone with its slot: this host allows one session per key, and the next creation works.
    let whole = format!("{}/v1/uploads/default/edge/whole.bin", server.url);
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 5",
            "-H",
            "Content-Type: application/offset+octet-stream",
            "--data-binary",
            "abcde",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &whole,
        ],
    );
    assert_eq!(stdout(&o), "201");
    assert_eq!(
        stored(d, &server, "edge/whole.bin").map(|s| s.0),
        Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"abcde")))
    );
    let over = format!("{}/v1/uploads/default/edge/over.bin", server.url);
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 3",
            "-H",
            "Content-Type: application/offset+octet-stream",
            "--data-binary",
            "abcde",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &over,
        ],
    );
    assert_eq!(stdout(&o), "400");
    // Metadata: a name with accents is kept percent-encoded; the host's own keys are refused.
    let meta = format!("{}/v1/uploads/default/edge/meta.bin", server.url);
    let name = format!("Upload-Metadata: filename {}", base64("Befund_Müller.pdf".as_bytes()));
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 0",
            "-H",
            &name,
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &meta,
        ],
    );
    assert_eq!(stdout(&o), "201", "the earlier refused creation left no session behind");
    let o = curl(d, &["-I", "-H", &auth, &format!("{}/v1/objects/default/edge/meta.bin", server.url)]);
    assert!(
        stdout(&o).to_ascii_lowercase().contains("x-stowage-meta-filename: befund_m%c3%bcller.pdf"),
        "{}",
        stdout(&o)
    );
    let reserved = format!("Upload-Metadata: stowage-sha256 {}", base64(b"x"));
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 0",
            "-H",
            &reserved,
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &meta,
        ],
    );
    assert_eq!(stdout(&o), "400");
    // An empty upload is complete at its creation.
    let empty = format!("{}/v1/uploads/default/edge/empty.bin", server.url);
    let o = curl(
        d,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 0",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &empty,
        ],
    );
    assert_eq!(stdout(&o), "201");
    assert!(stored(d, &server, "edge/empty.bin").is_some());
}

/// A TCP proxy on loopback to `to` that cuts the connection carrying the byte `cut_after`
/// (counted over all connections towards `to`: clients open one per request or keep one),
/// once. Counts connections.
struct CutOnce {
    port: u16,
    connections: Arc<AtomicUsize>,
    cut: Arc<AtomicBool>,
    /// Bytes carried towards `to`.
    carried: Arc<AtomicU64>,
}

impl CutOnce {
    fn start(to: u16, cut_after: u64) -> CutOnce {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (connections, cut, carried) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (n, cut2, carried1) = (connections.clone(), cut.clone(), carried.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                n.fetch_add(1, Ordering::AcqRel);
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (cut3, carried2) = (cut2.clone(), carried1.clone());
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, upstream);
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = from.read(&mut buf) {
                        let before = carried2.fetch_add(n as u64, Ordering::AcqRel);
                        let crossing = before < cut_after && before + n as u64 >= cut_after;
                        if n == 0
                            || (crossing && !cut3.swap(true, Ordering::AcqRel))
                            || to.write_all(&buf[..n]).is_err()
                        {
                            break;
                        }
                    }
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let (mut from, mut to) = (u2, c2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        });
        CutOnce { port, connections, cut, carried }
    }
}

fn base64_sha256(bytes: &[u8]) -> String {
    base64(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_patch_whose_body_breaks_after_its_last_byte_still_commits_and_says_whole() {
    let (dir, server) = host();
    let d = dir.path();
    let auth = format!("Authorization: Bearer {KEY}");
    let create = format!("{}/v1/uploads/default/edge/last.bin", server.url);
    let o =
        curl(d, &["-X", "POST", "-H", &auth, "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Length: 11", "-i", &create]);
    let location = stdout(&o)
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("location:").then(|| l[9..].trim().to_string()))
        .expect("a Location");
    // Every byte, in a chunked body whose ending never comes: the connection just closes.
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n"
    );
    conn.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(conn);
    // The client asks the offset, as tus clients do: whole only once it is stored.
    let session = format!("{}{location}", server.url);
    let mut head = String::new();
    for _ in 0..50 {
        head = stdout(&curl(d, &["-I", "-H", &auth, "-H", "Tus-Resumable: 1.0.0", &session])).to_ascii_lowercase();
        if head.contains("upload-offset: 11") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(head.starts_with("http/1.1 200") && head.contains("upload-offset: 11"), "{head}");
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"hello world"));
    assert_eq!(stored(d, &server, "edge/last.bin").map(|s| s.0), Some(want), "said whole, and stored");
}
