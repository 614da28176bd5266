//! A real PostgreSQL server for a test: Debian's `postgresql` binaries (`.ci/run` installs
//! them), a cluster made by `initdb` in a temporary directory, listening on a free loopback
//! port with a password, stopped and removed when dropped. Run as root (as CI is), the server
//! runs as the `postgres` user the package created: PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{free_port, is_root};

/// A running (or stopped) test cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
}

/// Tries to start a cluster this many times, on a new free port each time (another test may
/// take a port between the check and the server's bind).
const START_ATTEMPTS: usize = 4;

/// The directory of Debian's PostgreSQL server binaries (the newest installed).
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STOWAGE_TEST_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no PostgreSQL server under /usr/lib/postgresql: install Debian's `postgresql` package (.ci/run does)")
    })
}

impl Postgres {
    /// Makes a cluster and starts it.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("stowage-pg").tempdir().unwrap();
        let password = format!("pw-{}", hex::encode(rand_bytes()));
        std::fs::write(dir.path().join("pwfile"), &password).unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        if is_root() {
            let o = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).output().unwrap();
            assert!(o.status.success(), "chown: {}", String::from_utf8_lossy(&o.stderr));
        }
        let mut pg = Postgres { dir, bin, port: free_port(), password };
        let data = pg.data();
        let pwfile = pg.dir.path().join("pwfile");
        pg.run_ok(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "stowage",
                "--auth=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        for attempt in 1..=START_ATTEMPTS {
            match pg.try_start() {
                Ok(()) => return pg,
                Err(e) if attempt == START_ATTEMPTS => panic!("PostgreSQL did not start: {e}\n{}", pg.log()),
                Err(_) => pg.port = free_port(),
            }
        }
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a server binary (as `postgres` when we are root).
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(self.dir.path()).env("PGPASSWORD", &self.password).output().unwrap()
    }

    fn run_ok(&self, tool: &str, args: &[&str]) -> String {
        let o = self.run(tool, args);
        assert!(
            o.status.success(),
            "{tool} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Starts the server (again), waiting until it answers.
    pub fn start_again(&self) {
        if let Err(e) = self.try_start() {
            panic!("PostgreSQL did not start: {e}\n{}", self.log());
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=on",
            self.port,
            self.dir.path().join("run").display()
        );
        let log = self.dir.path().join("server.log");
        let data = self.data();
        let args = [data.to_str().unwrap(), log.to_str().unwrap(), &options];
        let o = self.run("pg_ctl", &["-D", args[0], "-l", args[1], "-o", args[2], "-w", "-t", "60", "start"]);
        if o.status.success() {
            Ok(())
        } else {
            Err(format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        }
    }

    /// Turns TLS on with this certificate chain and key (PEM), restarting the server.
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        let data = self.data();
        std::fs::copy(cert, data.join("server.crt")).unwrap();
        std::fs::copy(key, data.join("server.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        if is_root() {
            for f in ["server.crt", "server.key"] {
                let o = Command::new("chown").arg("postgres:postgres").arg(data.join(f)).output().unwrap();
                assert!(o.status.success(), "chown: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
        let conf = data.join("postgresql.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(&conf, format!("{text}\nssl = on\n")).unwrap();
        self.stop();
        self.start_again();
    }

    /// Stops the server (fast: clients are disconnected).
    pub fn stop(&self) {
        self.run_ok("pg_ctl", &["-D", self.data().to_str().unwrap(), "-m", "fast", "-w", "stop"]);
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`, with the password, in plain text (`sslmode=disable`: the
    /// ledger requires TLS unless the URL says so).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://stowage:{}@127.0.0.1:{}/{db}?sslmode=disable", self.password, self.port)
    }

    /// Runs SQL in database `db` with psql; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.run_ok("psql", &["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.url(db), "-c", sql])
    }

    /// Makes a new empty database; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Where the cluster lives.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn rand_bytes() -> [u8; 12] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 12];
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    out
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", self.data().to_str().unwrap_or_default(), "-m", "immediate", "-w", "stop"]);
    }
}
