//! The driver's config, read once per instance.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `endpoint` | the services host's origin, e.g. `https://services.internal:8443` (grant the same one) | required |
//! | `name` | the storage class or disk on the services host that holds this disk's objects | the request's class, else `default` |
//! | `max_attempts` | attempts per request when the services host is unreachable or busy (1 to 10) | `4` |
//! | `backoff_ms` | the first retry's delay; each next one doubles (with jitter), up to 5 s | `200` |
//! | `segment_mib` | bytes per upload request (1 to 64); the writer keeps one segment in memory to resume from | `8` |
//! | `timeout_ms` | the longest wait for a connection, for an answer once a request is sent, and between two parts of an answer | `10000` |
//! | `retry_budget_ms` | no retry starts later than this after the operation's first attempt (keep it under the disk's `limits.call_timeout_ms`) | `15000` |
//!
//! The API key is not config: the host adds it (`grant.api_key`), so the plugin never sees it.

use std::time::Duration;

use stowage_plugin_sdk::driver::stowage::storage::types::Error;
use stowage_plugin_sdk::settings::driver_config;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Settings {
    pub https: bool,
    /// `host:port`.
    pub authority: String,
    pub name: Option<String>,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub segment: usize,
    pub timeout: Duration,
    pub retry_budget: Duration,
}

impl Settings {
    pub fn load() -> Result<Settings, Error> {
        let config = driver_config("remote driver");
        let endpoint = config.required("endpoint", "the services host's https:// origin")?;
        let endpoint = endpoint.trim_end_matches('/');
        let (https, authority) = if let Some(rest) = endpoint.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = endpoint.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(config.error("endpoint", "must start with https:// (or http:// in development)").into());
        };
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return Err(config.error("endpoint", "must be an origin only: scheme, host and port").into());
        }
        Ok(Settings {
            https,
            authority: authority.to_string(),
            name: config.text("name"),
            max_attempts: u32::try_from(config.number("max_attempts", 4, 1..=10)?).unwrap_or(4),
            backoff: Duration::from_millis(config.number("backoff_ms", 200, 0..=60_000)?),
            segment: usize::try_from(config.number("segment_mib", 8, 1..=64)? << 20)
                .map_err(|_| config.error("segment_mib", "is too large"))?,
            timeout: Duration::from_millis(config.number("timeout_ms", 10_000, 100..=600_000)?),
            retry_budget: Duration::from_millis(config.number("retry_budget_ms", 15_000, 0..=3_600_000)?),
        })
    }

    /// How long to wait before attempt `next` (2, 3, ...): exponential, with jitter so that
    /// many clients do not retry in step.
    pub fn backoff_before(&self, next: u32) -> Duration {
        let doubling = 1u32 << next.saturating_sub(2).min(16);
        let full = self.backoff.saturating_mul(doubling).min(MAX_BACKOFF);
        // Between half and all of it.
        let jitter = wasip2_random_unit();
        full.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// A random number in [0, 1).
fn wasip2_random_unit() -> f64 {
    (stowage_plugin_sdk::wasip2::random::random::get_random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
