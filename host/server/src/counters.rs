//! What `/metrics` counts of requests: how many and how long per operation, storage name and
//! status, and object bytes received and sent per storage name. `metrics.rs` counts and
//! writes them out.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// (operation, name, status): what one request count is kept under.
pub type RequestKey = (&'static str, String, u16);

/// The counters.
#[derive(Default)]
pub struct Counters {
    /// (operation, name, status) → (count, seconds).
    requests: Mutex<BTreeMap<RequestKey, (u64, f64)>>,
    /// name → (bytes received, bytes sent).
    bytes: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl Counters {
    /// Counts one request under `key`, answered in `seconds`.
    pub fn record(&self, key: RequestKey, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            let e = m.entry(key).or_default();
            e.0 += 1;
            e.1 += seconds;
        }
    }

    /// Counts `n` bytes received (`sent = false`) or sent for `name`.
    pub fn add_bytes(&self, name: &str, n: u64, sent: bool) {
        if let Ok(mut m) = self.bytes.lock() {
            let e = m.entry(name.to_string()).or_default();
            if sent { e.1 += n } else { e.0 += n }
        }
    }

    /// The request counts now: (operation, name, status) → (count, seconds).
    pub fn requests(&self) -> BTreeMap<RequestKey, (u64, f64)> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The byte counts now: name → (bytes received, bytes sent).
    pub fn bytes(&self) -> BTreeMap<String, (u64, u64)> {
        self.bytes.lock().map(|b| b.clone()).unwrap_or_default()
    }
}
