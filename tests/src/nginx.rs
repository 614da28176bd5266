//! A real nginx for a test: Debian's `nginx` binary (`.ci/run` installs `nginx-light`), run in
//! the foreground with a prefix of its own in a temporary directory, listening on a free
//! loopback port, stopped when dropped. The site (the `upstream` and `server` blocks) is
//! given as text: the tests install `deploy/cluster/nginx.conf` with only the addresses and
//! file paths a test machine must change.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx: one process (`master_process off`), so that killing it stops it all.
pub struct Nginx {
    dir: tempfile::TempDir,
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

/// The nginx binary: `STOWAGE_TEST_NGINX`, else Debian's.
fn binary() -> PathBuf {
    std::env::var_os("STOWAGE_TEST_NGINX").map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from)
}

impl Nginx {
    /// Starts nginx serving `site` (the contents of an `http { }` block, which listens on
    /// `port`). nginx's own files (pid, logs, temporary bodies) are under a fresh directory,
    /// [`Nginx::dir`].
    pub fn start(port: u16, site: &str) -> Nginx {
        let exe = binary();
        assert!(exe.exists(), "no nginx at {}: install Debian's `nginx-light` (.ci/run does)", exe.display());
        let dir = tempfile::Builder::new().prefix("stowage-nginx").tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("logs")).unwrap();
        std::fs::create_dir_all(d.join("temp")).unwrap();
        // Temporary files of request and response bodies (nginx unlinks each as it makes
        // it, and logs it: [`Nginx::buffered_to_disk`]).
        let temp = |what: &str| d.join("temp").join(what).display().to_string();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {pid};\nerror_log {log} warn;\n{user}\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {body};\n  proxy_temp_path {proxy};\n\
             fastcgi_temp_path {fcgi};\n  uwsgi_temp_path {uwsgi};\n  scgi_temp_path {scgi};\n{site}\n}}\n",
            pid = d.join("nginx.pid").display(),
            log = d.join("logs/error.log").display(),
            // Run as root (as CI is), nginx's workers would switch to www-data, which cannot
            // read the test's files.
            user = if crate::is_root() { "user root;\n" } else { "" },
            body = temp("body"),
            proxy = temp("proxy"),
            fcgi = temp("fastcgi"),
            uwsgi = temp("uwsgi"),
            scgi = temp("scgi"),
        );
        std::fs::write(d.join("nginx.conf"), main).unwrap();
        let check = Command::new(&exe).arg("-p").arg(d).arg("-c").arg(d.join("nginx.conf")).arg("-t").output().unwrap();
        assert!(
            check.status.success(),
            "nginx refused its config: {}\n{}",
            String::from_utf8_lossy(&check.stderr),
            std::fs::read_to_string(d.join("nginx.conf")).unwrap_or_default()
        );
        let child = Command::new(&exe)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut nginx = Nginx { dir, child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            // Exited (say, another process took the port first): nothing of ours listens.
            let exited = nginx.child.try_wait().ok().flatten();
            assert!(exited.is_none(), "nginx exited ({exited:?}): {}", nginx.log());
            assert!(started.elapsed() < Duration::from_secs(20), "nginx did not listen: {}", nginx.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    /// nginx's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }

    /// nginx's own directory (config, logs, temporary bodies under `temp/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether nginx wrote a request or response body to a temporary file (it logs each one
    /// at `warn`, and unlinks the file as it makes it, so the directory always looks empty).
    pub fn buffered_to_disk(&self) -> bool {
        self.log().contains("buffered to a temporary file")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
