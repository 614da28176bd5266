//! The behaviour every Stowage driver must have, written once as plain async functions over a
//! [`Disk`], so the bundled drivers, outside plugins and `stowage plugin test` all run the same
//! suite. Checks that need an optional capability are skipped, with a reason, when the driver
//! does not declare it.
//!
//! ```no_run
//! # async fn demo(disk: stowage_runtime::Disk) {
//! let report = stowage_conformance::run(&disk, "conformance-run-1").await;
//! for line in report.lines() { println!("{line}"); }
//! assert_eq!(report.failed(), 0);
//! # }
//! ```

mod check;
mod checks;
mod harness;
pub mod policy;

pub use check::{Check, CheckFuture, Needs};
pub use harness::Harness;
use stowage_runtime::{Capabilities, Disk};

/// Every check of the suite.
pub fn checks() -> Vec<Check> {
    checks::all()
}

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Pass,
    /// It failed, with what was wrong.
    Fail(String),
    /// It did not run, with why.
    Skip(String),
}

/// The outcome of every check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// (check name, outcome), in suite order.
    pub results: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// Checks that failed.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|(_, o)| matches!(o, Outcome::Fail(_))).count()
    }

    /// Checks that passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|(_, o)| *o == Outcome::Pass).count()
    }

    /// Checks that were skipped.
    pub fn skipped(&self) -> usize {
        self.results.iter().filter(|(_, o)| matches!(o, Outcome::Skip(_))).count()
    }

    /// One `PASS|FAIL|SKIP name[: reason]` line per check, then `N passed, N failed, N skipped`.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .results
            .iter()
            .map(|(name, o)| match o {
                Outcome::Pass => format!("PASS {name}"),
                Outcome::Fail(why) => format!("FAIL {name}: {why}"),
                Outcome::Skip(why) => format!("SKIP {name}: {why}"),
            })
            .collect();
        out.push(format!("{} passed, {} failed, {} skipped", self.passed(), self.failed(), self.skipped()));
        out
    }
}

/// Runs every check against `disk`, under the path prefix `scope` (so runs do not collide).
pub async fn run(disk: &Disk, scope: &str) -> Report {
    let caps = match disk.capabilities().await {
        Ok(caps) => caps,
        Err(e) => {
            return Report { results: vec![("capabilities", Outcome::Fail(format!("get-capabilities failed: {e}")))] };
        }
    };
    let mut report = Report::default();
    for check in checks() {
        report.results.push((check.name, run_one(disk, scope, &caps, &check).await));
    }
    report
}

/// Runs one check.
pub async fn run_one(disk: &Disk, scope: &str, caps: &Capabilities, check: &Check) -> Outcome {
    if !check.needs.met_by(caps) {
        return Outcome::Skip(format!("the driver does not declare {}", check.needs.wit_name()));
    }
    let harness = Harness::new(disk.clone(), *caps, format!("{scope}/{}", check.name.replace('/', "-")));
    if check.needs == check::Needs::Resumable
        && let Some(why) = harness.cannot_suspend().await
    {
        return Outcome::Skip(why);
    }
    match (check.run)(&harness).await {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(why),
    }
}
