//! The CLI round trip from a fresh directory with no config (the embedded default).

use std::process::Command;

use crate::{run_in, stderr, stdout};

#[test]
fn round_trip_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(d.join("data.bin"), &data).unwrap();
    let want_sha = stowage_tests::sha256_file(&d.join("data.bin"));

    let o = run_in(
        d,
        &[
            "put",
            "scratch:audit_123/data.bin",
            "data.bin",
            "--meta",
            "cohort=VACS",
            "--content-type",
            "application/octet-stream",
        ],
    );
    assert!(o.status.success(), "put: {}", stderr(&o));
    assert!(d.join("stowage-data/audit_123/data.bin").is_file(), "embedded default stores under ./stowage-data");

    let o = run_in(d, &["ls", "default:"]);
    assert!(o.status.success(), "ls: {}", stderr(&o));
    assert_eq!(stdout(&o), "audit_123/data.bin\n");

    let o = run_in(d, &["stat", "default:audit_123/data.bin", "--json"]);
    assert!(o.status.success(), "stat: {}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["path"], "audit_123/data.bin");
    assert_eq!(json["size"], data.len() as u64);
    assert_eq!(json["sha256"], want_sha.as_str());
    assert_eq!(json["content_type"], "application/octet-stream");
    assert_eq!(json["metadata"]["cohort"], "VACS");

    let o = run_in(d, &["get", "submission:audit_123/data.bin"]);
    assert!(o.status.success(), "get: {}", stderr(&o));
    assert!(o.stdout == data, "get to stdout returned different bytes");
    let o = run_in(d, &["get", "default:audit_123/data.bin", "-o", "back.bin"]);
    assert!(o.status.success(), "get -o: {}", stderr(&o));
    assert_eq!(std::fs::read(d.join("back.bin")).unwrap(), data);

    let o = run_in(d, &["rm", "default:audit_123/data.bin"]);
    assert!(o.status.success(), "rm: {}", stderr(&o));
    let o = run_in(d, &["get", "default:audit_123/data.bin"]);
    assert_eq!(o.status.code(), Some(3), "get after rm must exit 3 (not found)");
    assert!(stderr(&o).contains("not found"), "message: {}", stderr(&o));
    assert!(o.stdout.is_empty());
    let o = run_in(d, &["ls", "default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "nothing listed after rm");
}

#[test]
fn put_reads_stdin_and_errors_are_one_actionable_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = crate::stowage()
        .current_dir(d)
        .args(["put", "default:from-stdin.txt", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped bytes").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(stdout(&run_in(d, &["get", "default:from-stdin.txt"])), "piped bytes");

    let cases: &[(&[&str], i32, &str)] = &[
        (&["get", "default:../etc/passwd"], 5, "invalid path: path segment 1 is `..`"),
        (&["get", "default:/etc/passwd"], 5, "invalid path: path starts with `/`"),
        (&["get", "nowhere:x"], 3, "no storage class or disk named `nowhere`"),
        (&["get", "no-colon"], 5, "is not of the form NAME:path"),
        (&["put", "default:x", "missing-file"], 1, "cannot open missing-file"),
        (&["rm", "default:never-there"], 3, "not found"),
    ];
    for (args, code, needle) in cases {
        let o = run_in(d, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?} must print one line: {err}");
    }
    assert!(!d.join("etc").exists());
}

/// `get -o` writes into what is there: a device node stays a node, a FIFO's reader gets the
/// bytes, a symlink's target gets them (the link stays), a regular file is replaced atomically
/// keeping its mode, and a directory that cannot take a temp file is a clear error that
/// leaves nothing behind. (The device node is made with mknod: root, as in CI.)
#[test]
fn get_output_writes_into_devices_fifos_and_through_symlinks() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("data.bin"), &data).unwrap();
    let o = run_in(d, &["put", "default:obj.bin", "data.bin"]);
    assert!(o.status.success(), "put: {}", stderr(&o));
    let get_to = |target: &str| run_in(d, &["get", "default:obj.bin", "-o", target]);

    // A character device like /dev/null (same major/minor), made here rather than risking the
    // machine's own.
    let null = d.join("null");
    let o = Command::new("mknod").arg(&null).args(["c", "1", "3"]).output().unwrap();
    assert!(o.status.success(), "mknod (needs root): {}", String::from_utf8_lossy(&o.stderr));
    let o = get_to("null");
    assert!(o.status.success(), "get -o device: {}", stderr(&o));
    let meta = std::fs::symlink_metadata(&null).unwrap();
    assert!(meta.file_type().is_char_device(), "the device node must stay a device node");

    // A FIFO with a reader: the reader gets every byte, the FIFO stays a FIFO.
    let fifo = d.join("fifo");
    let o = Command::new("mkfifo").arg(&fifo).output().unwrap();
    assert!(o.status.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = get_to("fifo");
    assert!(o.status.success(), "get -o fifo: {}", stderr(&o));
    assert!(reader.join().unwrap() == data, "the FIFO's reader must get the object's bytes");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    // /dev/stdout is this process's output, a pipe here, or a file opened for appending.
    let o = get_to("/dev/stdout");
    assert!(o.status.success(), "get -o /dev/stdout: {}", stderr(&o));
    assert!(o.stdout == data, "the bytes went to stdout");
    std::fs::write(d.join("log.txt"), b"earlier lines\n").unwrap();
    let o = Command::new("sh")
        .current_dir(d)
        .arg("-c")
        .arg(format!("'{}' get default:obj.bin -o /dev/stdout >> log.txt", env!("CARGO_BIN_EXE_stowage")))
        .env("STOWAGE_CACHE_DIR", std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("stowage-cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(d.join("log.txt")).unwrap() == [b"earlier lines\n".as_slice(), &data].concat(),
        "appended, not replaced"
    );

    // A symlink: its target gets the bytes, the link stays a link.
    std::fs::write(d.join("real.bin"), b"old").unwrap();
    std::os::unix::fs::symlink("real.bin", d.join("link.bin")).unwrap();
    let o = get_to("link.bin");
    assert!(o.status.success(), "get -o symlink: {}", stderr(&o));
    assert!(std::fs::symlink_metadata(d.join("link.bin")).unwrap().file_type().is_symlink());
    assert!(std::fs::read(d.join("real.bin")).unwrap() == data, "the link's target must hold the bytes");

    // A link to nothing is refused, and nothing is created.
    std::os::unix::fs::symlink("nowhere.bin", d.join("dangling.bin")).unwrap();
    let o = get_to("dangling.bin");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("dangling.bin is a symlink to nowhere.bin, which does not exist"), "{}", stderr(&o));
    assert!(!d.join("nowhere.bin").exists());
    assert!(std::fs::symlink_metadata(d.join("dangling.bin")).unwrap().file_type().is_symlink());

    // A regular file: replaced (a new inode: atomic rename), keeping its mode.
    use std::os::unix::fs::MetadataExt;
    let file = d.join("file.bin");
    std::fs::write(&file, b"old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let ino = std::fs::metadata(&file).unwrap().ino();
    let o = get_to("file.bin");
    assert!(o.status.success(), "get -o file: {}", stderr(&o));
    let meta = std::fs::metadata(&file).unwrap();
    assert!(std::fs::read(&file).unwrap() == data);
    assert_ne!(meta.ino(), ino, "a regular file is replaced by rename, not rewritten");
    assert_eq!(meta.permissions().mode() & 0o777, 0o640, "the new file keeps the old one's mode");

    // A directory that cannot take a temp file (a read-only mount: root ignores mode bits):
    // a clear error naming it, the old file untouched, no temp file left.
    let ro = d.join("ro");
    let fs = crate::audit::Tmpfs::mount(&ro, "1M");
    std::fs::write(ro.join("kept.bin"), b"old").unwrap();
    fs.remount("ro");
    let o = get_to("ro/kept.bin");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot create a temp file in") && stderr(&o).contains("ro"), "{}", stderr(&o));
    assert_eq!(std::fs::read(ro.join("kept.bin")).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 1, "nothing left beside the target");
}

/// `stowage health`: every disk's round trip and the ledger in one report; a disk whose
/// directory became read-only fails it, named, with a non-zero exit.
#[test]
fn health_reports_every_disk_and_the_ledger_and_fails_naming_a_read_only_disk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("stowage.toml"),
        "role = \"testing\"\n[disks.good]\nplugin = \"local-fs\"\ngrant = { dir = \"good\" }\n\
         [disks.frozen]\nplugin = \"local-fs\"\ngrant = { dir = \"frozen\" }\n[storage]\ndefault = \"good\"\n\
         [[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n",
    )
    .unwrap();
    let fs = crate::audit::Tmpfs::mount(&d.join("frozen"), "1M");
    assert!(run_in(d, &["put", "default:a.txt", "stowage.toml"]).status.success());
    let o = run_in(d, &["health"]);
    assert!(o.status.success(), "healthy: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.lines().any(|l| l.starts_with("disk good") && l.contains(" ok ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("disk frozen") && l.contains(" ok ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ledger") && l.contains("ok") && l.contains("records verify")), "{out}");

    fs.remount("ro");
    let o = run_in(d, &["health", "--json"]);
    assert!(!o.status.success(), "a read-only disk must fail the check");
    // (wasmtime-wasi reports EROFS as a plain I/O error, so the kind is `io`.)
    assert!(stderr(&o).contains("health check failed: disk frozen: io"), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["disks"]["good"]["ok"], true);
    assert_eq!(json["disks"]["frozen"]["ok"], false);
    assert_eq!(json["disks"]["frozen"]["error"], "io");
    assert!(json["disks"]["frozen"]["message"].as_str().unwrap().contains("read-only"), "{json}");
    assert_eq!(json["ledger"]["ok"], true);
    assert!(json["ledger"]["records"].as_u64().unwrap() >= 1, "{json}");
    // The check itself is recorded (that is how it knows the ledger can record).
    let show = stdout(&run_in(d, &["ledger", "show"]));
    assert_eq!(show.lines().filter(|l| l.contains("health_checked")).count(), 2, "{show}");
    // The probes leave nothing behind on the good disk.
    let o = run_in(d, &["ls", "good:"]);
    assert_eq!(stdout(&o), "a.txt\n");
}

/// `ls -l` and `ls --json`, completions for three shells, the man page, and JSON logs in which
/// `serve`'s access log carries the request id as a field.
#[test]
fn long_and_json_listings_completions_man_page_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.txt"), "hello\n").unwrap();
    for addr in ["default:x/a.txt", "default:x/b.txt"] {
        assert!(run_in(d, &["put", addr, "a.txt"]).status.success());
    }
    let o = run_in(d, &["ls", "-l", "default:x/"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Vec<String>> =
        stdout(&o).lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&o));
    for (fields, path) in lines.iter().zip(["x/a.txt", "x/b.txt"]) {
        assert_eq!(fields.len(), 4, "size, modified, sha256, path: {fields:?}");
        assert_eq!((fields[0].as_str(), fields[3].as_str()), ("6", path));
        assert!(fields[1].starts_with("20") && fields[1].ends_with('Z'), "{fields:?}");
    }
    let o = run_in(d, &["ls", "--json", "default:x/"]);
    let items: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(items.iter().map(|i| i["path"].as_str().unwrap()).collect::<Vec<_>>(), ["x/a.txt", "x/b.txt"]);
    assert!(items.iter().all(|i| i["size"] == 6 && i["modified_ms"].as_u64().is_some()), "{items:?}");

    for (shell, needle) in
        [("bash", "complete -F _stowage"), ("zsh", "#compdef stowage"), ("fish", "complete -c stowage")]
    {
        let o = run_in(d, &["completions", shell]);
        assert!(o.status.success() && stdout(&o).contains(needle), "{shell}: {}", stderr(&o));
        assert!(stdout(&o).contains("health"), "{shell} completes the subcommands");
    }
    let o = run_in(d, &["man"]);
    assert!(
        o.status.success() && stdout(&o).contains(".TH stowage 1") && stdout(&o).contains("health"),
        "{}",
        stderr(&o)
    );

    // JSON logs: every line an object; serve's access log has the request's id.
    std::fs::write(
        d.join("stowage.toml"),
        format!("role = \"services\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\n[storage]\ndefault = \"local\"\n[server]\ndev_mode = true\napi_keys = [\"{}\"]\n", crate::serve::KEY),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("serve.log")).unwrap();
    let mut child = crate::stowage()
        .current_dir(d)
        .env("STOWAGE_LOG_FORMAT", "json")
        .env("STOWAGE_LOG", "info")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let url = line.trim().strip_prefix("stowage: serving on ").unwrap().to_string();
    let o = crate::serve::curl(
        d,
        &["-H", "x-request-id: log-check-42", "-o", "/dev/null", "-w", "%{http_code}", &format!("{url}/healthz")],
    );
    assert_eq!(stdout(&o), "200");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(d.join("serve.log")).unwrap();
    let logs: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let access = logs
        .iter()
        .find(|l| l["span"]["id"] == "log-check-42")
        .unwrap_or_else(|| panic!("no log line with the request id:\n{text}"));
    assert_eq!(access["fields"]["status"], 200, "{access}");
    assert_eq!(access["fields"]["message"], "answered");
}
