//! Requests in flight per credential (an API key, or all signed URLs together): a credential
//! past its cap is refused (`limits.rs` says how), so one client cannot take every request
//! the host can hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests in flight, per credential.
pub struct PerKey {
    max: usize,
    keys: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A request's place among its credential's requests in flight; the response body holds it
/// until the last byte is sent.
#[derive(Clone)]
pub struct InFlight {
    _place: Arc<OwnedSemaphorePermit>,
}

impl PerKey {
    /// At most `max` requests in flight per credential.
    pub fn new(max: usize) -> PerKey {
        PerKey { max: max.max(1), keys: Mutex::default() }
    }

    /// The most requests one credential may have in flight.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for a request of `who`, if it has one free; held until the last clone of it
    /// is dropped.
    pub fn enter(&self, who: &str) -> Option<InFlight> {
        let semaphore = {
            let mut keys = self.keys.lock().ok()?;
            match keys.get(who) {
                Some(s) => s.clone(),
                None => keys.entry(who.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.max))).clone(),
            }
        };
        semaphore.try_acquire_owned().ok().map(|permit| InFlight { _place: Arc::new(permit) })
    }
}
