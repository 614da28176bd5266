//! What the scheduled fixity checks (`[fixity]`, run by `lib.rs`) found, per disk, for
//! `/metrics`: runs, objects and bytes checked, the last run's problems by kind and when it
//! ended, and runs that could not complete.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use stowage_runtime::{FixityReport, ProblemKind};

/// One disk's counts.
#[derive(Debug, Default, Clone)]
struct DiskRuns {
    runs: u64,
    failed: u64,
    objects: u64,
    bytes: u64,
    /// The last completed run's problems, by kind.
    last_problems: [u64; ProblemKind::ALL.len()],
    /// When the last completed run ended, seconds since the Unix epoch.
    last_run_secs: f64,
}

/// A per-disk series: name, type, help, and its value for a disk.
type Series = (&'static str, &'static str, &'static str, fn(&DiskRuns) -> String);

/// Per disk, what the scheduled checks found.
#[derive(Debug, Default)]
pub struct FixityRuns(Mutex<BTreeMap<String, DiskRuns>>);

impl FixityRuns {
    fn with(&self, disk: &str, f: impl FnOnce(&mut DiskRuns)) {
        let mut runs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(runs.entry(disk.to_string()).or_default());
    }

    /// A completed run.
    pub fn completed(&self, report: &FixityReport) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.with(&report.disk, |d| {
            d.runs += 1;
            d.objects += report.objects;
            d.bytes += report.bytes;
            d.last_problems = ProblemKind::ALL.map(|k| report.count(k));
            d.last_run_secs = now;
        });
    }

    /// A run that could not complete (the disk or the ledger failed).
    pub fn failed(&self, disk: &str) {
        self.with(disk, |d| d.failed += 1);
    }

    /// The Prometheus text of every disk's counts (nothing before the first run).
    pub fn render(&self, out: &mut String) {
        let runs = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if runs.is_empty() {
            return;
        }
        let series: [Series; 5] = [
            ("stowage_fixity_runs_total", "counter", "Scheduled fixity checks completed.", |d| d.runs.to_string()),
            ("stowage_fixity_failed_runs_total", "counter", "Scheduled fixity checks that could not complete.", |d| {
                d.failed.to_string()
            }),
            ("stowage_fixity_objects_checked_total", "counter", "Objects whose bytes fixity checks hashed.", |d| {
                d.objects.to_string()
            }),
            ("stowage_fixity_bytes_checked_total", "counter", "Bytes fixity checks hashed.", |d| d.bytes.to_string()),
            (
                "stowage_fixity_last_run_timestamp_seconds",
                "gauge",
                "When the last completed fixity check ended.",
                |d| d.last_run_secs.to_string(),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (disk, d) in &runs {
                let _ = writeln!(out, "{name}{{disk=\"{}\"}} {}", label(disk), value(d));
            }
        }
        let _ = writeln!(
            out,
            "# HELP stowage_fixity_problems Objects the last completed fixity check found wrong, by kind.\n# TYPE stowage_fixity_problems gauge"
        );
        for (disk, d) in &runs {
            for (kind, n) in ProblemKind::ALL.iter().zip(d.last_problems) {
                let _ =
                    writeln!(out, "stowage_fixity_problems{{disk=\"{}\",kind=\"{}\"}} {n}", label(disk), kind.as_str());
            }
        }
    }
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_disk_gets_its_series_and_the_last_runs_problems() {
        let runs = FixityRuns::default();
        let mut out = String::new();
        runs.render(&mut out);
        assert!(out.is_empty(), "nothing before the first run");
        let mut report = FixityReport {
            disk: "nas".into(),
            prefix: String::new(),
            objects: 3,
            bytes: 30,
            records_read: 9,
            changed: 0,
            problems: Vec::new(),
            elapsed: std::time::Duration::ZERO,
            record_index: Some(9),
        };
        runs.completed(&report);
        report.problems = vec![stowage_runtime::Problem {
            kind: ProblemKind::Missing,
            path: "a".into(),
            actual_sha256: None,
            driver_sha256: None,
            ledger_sha256: None,
            ledger_index: None,
            error: None,
            mirror: None,
            repaired: false,
        }];
        runs.completed(&report);
        runs.failed("nas");
        runs.render(&mut out);
        for line in [
            "stowage_fixity_runs_total{disk=\"nas\"} 2",
            "stowage_fixity_failed_runs_total{disk=\"nas\"} 1",
            "stowage_fixity_objects_checked_total{disk=\"nas\"} 6",
            "stowage_fixity_bytes_checked_total{disk=\"nas\"} 60",
            "stowage_fixity_problems{disk=\"nas\",kind=\"missing\"} 1",
            "stowage_fixity_problems{disk=\"nas\",kind=\"corrupted\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
    }
}
