//! The last readiness probe of the disks and when it ran. A probe's answer is reused for
//! `readiness_interval`: however many ask, at most one probe runs at a time and one per
//! interval, so `/readyz` (`health.rs`) cannot be used to load the disks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The last disk probe and when it ran.
pub struct Readiness {
    interval: Duration,
    last: Mutex<Option<(Instant, bool, serde_json::Value)>>,
    /// Held while a probe runs: the others wait for its answer.
    running: tokio::sync::Mutex<()>,
    /// Probes run since start.
    pub probes: AtomicU64,
}

impl Readiness {
    /// Reuses a probe's answer for `interval`.
    pub fn new(interval: Duration) -> Readiness {
        Readiness { interval, last: Mutex::new(None), running: tokio::sync::Mutex::new(()), probes: AtomicU64::new(0) }
    }

    /// Forgets the last answer (a reload brought other disks): the next caller probes.
    pub fn forget(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }

    fn fresh(&self) -> Option<(bool, serde_json::Value)> {
        let last = self.last.lock().ok()?;
        let (at, ok, disks) = last.as_ref()?;
        (at.elapsed() < self.interval).then(|| (*ok, disks.clone()))
    }

    /// The disks' answer: a recent probe's, or `probe`'s (one at a time). `probe` runs only
    /// when no recent answer is there once this caller's turn comes.
    pub async fn disks(&self, probe: impl Future<Output = (bool, serde_json::Value)>) -> (bool, serde_json::Value) {
        if let Some(answer) = self.fresh() {
            return answer;
        }
        let _turn = self.running.lock().await;
        // Someone else's probe may have answered while this one waited.
        if let Some(answer) = self.fresh() {
            return answer;
        }
        self.probes.fetch_add(1, Ordering::Relaxed);
        let answer = probe.await;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), answer.0, answer.1.clone()));
        }
        answer
    }
}
