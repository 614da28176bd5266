//! `[fixity]`: scheduled fixity checks while `stowage serve` runs. Its table (serde), its
//! checks and its plan, in one place.
//!
//! ```toml
//! [fixity]
//! every = "24h"              # how often: a number and s, m, h or d (1 s to 365 d)
//! max_mib_per_sec = 100      # optional: read at most this fast
//! disks = ["nas"]            # optional: the default is every disk
//! ```

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The `[fixity]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixityConfig {
    /// How often `serve` checks every disk named: `30m`, `24h`, `7d`...
    pub every: Spanned<String>,
    /// At most this many MiB read per second.
    pub max_mib_per_sec: Option<Spanned<u64>>,
    /// The disks to check (default: every disk).
    pub disks: Option<Vec<Spanned<String>>>,
}

/// Scheduled fixity checks: what `serve` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixityPlan {
    /// Time between two checks of the disks (the first comes this long after the start).
    pub every: Duration,
    /// At most this many bytes read per second.
    pub max_bytes_per_sec: Option<u64>,
    /// The disks checked, in order.
    pub disks: Vec<String>,
}

/// Longest `every`: a year.
const MAX_EVERY: Duration = Duration::from_secs(365 * 86_400);

/// Parses `every`: a whole number and a unit (`s`, `m`, `h`, `d`).
fn parse_every(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("fixity.every = \"{text}\" must be a number and s, m, h or d (e.g. \"24h\")")),
    };
    let secs = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_secs))
        .map(Duration::from_secs)
        .filter(|d| !d.is_zero() && *d <= MAX_EVERY);
    secs.ok_or_else(|| format!("fixity.every = \"{text}\" must be between 1s and 365d"))
}

/// Checks `[fixity]` against the config's `disks` and builds its plan (none without the table,
/// or when a value is wrong: each problem is reported at its place).
pub(crate) fn plan(
    config: Option<&FixityConfig>,
    disks: &[&str],
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Option<FixityPlan> {
    let config = config?;
    let every = parse_every(config.every.get_ref()).map_err(|m| problem(config.every.span(), m)).ok();
    let mut rate_ok = true;
    if let Some(rate) = &config.max_mib_per_sec
        && !(1..=1_000_000).contains(rate.get_ref())
    {
        problem(rate.span(), format!("fixity.max_mib_per_sec = {} is out of range 1..=1000000", rate.get_ref()));
        rate_ok = false;
    }
    let mut named = Vec::new();
    for disk in config.disks.iter().flatten() {
        if !disks.contains(&disk.get_ref().as_str()) {
            problem(disk.span(), format!("fixity.disks: no disk named `{}`", disk.get_ref()));
        }
        named.push(disk.get_ref().clone());
    }
    let disks = match &config.disks {
        Some(_) => named,
        None => disks.iter().map(|d| d.to_string()).collect(),
    };
    Some(FixityPlan {
        every: every?,
        max_bytes_per_sec: config.max_mib_per_sec.as_ref().map(|m| m.get_ref().saturating_mul(1 << 20)),
        disks,
    })
    .filter(|_| rate_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_takes_a_number_and_a_unit_within_a_year() {
        assert_eq!(parse_every("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_every("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_every("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "24", "0s", "1.5h", "24 hours", "366d", "-1h", "99999999999999999999d"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }
}
