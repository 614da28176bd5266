//! The policy contract: what every policy component must do, whatever it decides. A policy
//! may allow or deny anything; it must answer (never trap or hang) for every operation it
//! declares it checks, on any input, take every outcome it declares it observes, and write
//! only ledger records the host accepts and can attribute to a request. Like the host, the
//! checks never call a policy for operations outside its declared interests.

use std::collections::BTreeSet;
use std::time::Duration;

use stowage_runtime::ledger::Ledger;
use stowage_runtime::policy::{Decision, Interests, OperationOutcome, OperationRequest, Policy};
use stowage_runtime::{Operation, OperationSet, RequestContext, Role, StorageClass, StorageError};

use crate::{Outcome, Report, ensure};

/// Runs the policy contract checks against `policy`, whose ledger appends go to `ledger`.
pub async fn run(policy: &Policy, ledger: &Ledger) -> Report {
    let mut report = Report::default();
    let interests = match interests(policy).await {
        Ok(interests) => interests,
        Err(why) => {
            report.results.push(("policy/interests", Outcome::Fail(why)));
            return report;
        }
    };
    report.results.push(("policy/interests", Outcome::Pass));
    let before = ledger.entries().map_or(0, |e| e.len());
    // Every request id the checks use: ledger records must name one of them.
    let mut ids = BTreeSet::new();
    let checks = interests.check;
    let outcome = |skip: bool, r: Result<(), String>| match (skip, r) {
        (true, _) => Outcome::Skip("the policy declares no operation to check".into()),
        (false, Ok(())) => Outcome::Pass,
        (false, Err(why)) => Outcome::Fail(why),
    };
    let r = answers_every_operation(policy, checks, &mut ids).await;
    report.results.push(("policy/answers-every-operation", outcome(checks.is_empty(), r)));
    let r = odd_input(policy, checks, &mut ids).await;
    report.results.push(("policy/odd-input", outcome(checks.is_empty(), r)));
    let r = observes_every_outcome(policy, interests.observe, &mut ids).await;
    report.results.push((
        "policy/observes-every-outcome",
        match (interests.observe.is_empty(), r) {
            (true, _) => Outcome::Skip("the policy declares no operation to observe".into()),
            (false, Ok(())) => Outcome::Pass,
            (false, Err(why)) => Outcome::Fail(why),
        },
    ));
    let r = records_accepted(ledger, before, &ids);
    report.results.push(("policy/ledger-records-accepted", r.map_or_else(Outcome::Fail, |()| Outcome::Pass)));
    report
}

async fn interests(policy: &Policy) -> Result<Interests, String> {
    let interests = policy.declared_interests().await.map_err(|e| format!("`interests` failed: {e}"))?;
    // Observing what you do not check is fine; both empty is a policy that does nothing.
    ensure!(
        !interests.check.is_empty() || !interests.observe.is_empty(),
        "`interests` declares no operation to check or observe: the policy would never be called"
    );
    Ok(interests)
}

/// A plain request context for `role`.
fn context(role: Role, request_id: String) -> RequestContext {
    RequestContext {
        role,
        class: Some(StorageClass::Default),
        disk: "conformance".into(),
        driver: "local-fs".into(),
        actor: Some("conformance".into()),
        request_id,
        metadata: vec![("cohort".into(), "CONFORMANCE".into())],
    }
}

fn request(operation: Operation, ctx: RequestContext, path: &str) -> OperationRequest {
    OperationRequest { operation, ctx, path: path.into(), content_type: None, object_metadata: Vec::new() }
}

async fn decide(policy: &Policy, r: &OperationRequest, what: &str) -> Result<Decision, String> {
    policy
        .decide(r)
        .await
        .map_err(|e| format!("`check` on {} ({what}) failed instead of answering: {e}", r.operation))
}

async fn answers_every_operation(policy: &Policy, checks: OperationSet, ids: &mut BTreeSet<String>) -> Result<(), String> {
    for role in [Role::Web, Role::Services, Role::Testing] {
        for op in Operation::ALL.into_iter().filter(|op| checks.contains(*op)) {
            let id = format!("conformance-{role}-{op}");
            ids.insert(id.clone());
            let r = request(op, context(role, id), "conformance/a.csv");
            decide(policy, &r, &format!("role {role}")).await?;
        }
    }
    Ok(())
}

async fn odd_input(policy: &Policy, checks: OperationSet, ids: &mut BTreeSet<String>) -> Result<(), String> {
    ids.extend(["conformance-odd".to_string(), String::new()]);
    let base = || context(Role::Services, "conformance-odd".into());
    let long = "d/".repeat(511) + "f";
    let many: Vec<(String, String)> = (0..1000).map(|i| (format!("k{i}"), "v".repeat(i % 7))).collect();
    let cases: Vec<(&str, OperationRequest)> = vec![
        ("an empty path", request(Operation::List, base(), "")),
        ("a 1023-byte path", request(Operation::Put, base(), &long)),
        ("a unicode path", request(Operation::Put, base(), "données/患者/😀.csv")),
        ("a path with `..`", request(Operation::Get, base(), "../../etc/passwd")),
        ("no actor, class or metadata", {
            let ctx = RequestContext { actor: None, class: None, metadata: Vec::new(), ..base() };
            request(Operation::Put, ctx, "a")
        }),
        ("an empty request id and disk", {
            let ctx = RequestContext { request_id: String::new(), disk: String::new(), driver: String::new(), ..base() };
            request(Operation::Delete, ctx, "a")
        }),
        ("NUL and control characters in metadata", {
            let ctx = RequestContext { metadata: vec![("cohort".into(), "a\0b\u{1b}[31m".into())], ..base() };
            request(Operation::Put, ctx, "a")
        }),
        ("1000 metadata entries", {
            let mut r = request(Operation::Put, RequestContext { metadata: many.clone(), ..base() }, "a");
            r.object_metadata = many.clone();
            r
        }),
        ("a 64 KiB content type", {
            let mut r = request(Operation::Put, base(), "a");
            r.content_type = Some("x".repeat(64 * 1024));
            r
        }),
    ];
    for (what, mut r) in cases {
        // Each odd input on every operation the policy checks.
        for op in Operation::ALL.into_iter().filter(|op| checks.contains(*op)) {
            r.operation = op;
            decide(policy, &r, what).await?;
        }
    }
    Ok(())
}

/// Tells the policy a success and failures of every operation it observes.
async fn observes_every_outcome(policy: &Policy, observes: OperationSet, ids: &mut BTreeSet<String>) -> Result<(), String> {
    let failures = [
        StorageError::NotFound("conformance/a.csv".into()),
        StorageError::Denied("policy `other`: no".into()),
        StorageError::Unavailable { reason: "backend down".into(), retryable: true },
        StorageError::Io("disk full".into()),
    ];
    for op in Operation::ALL.into_iter().filter(|op| observes.contains(*op)) {
        let mut outcomes = Vec::new();
        let id = format!("conformance-observe-{op}-ok");
        let mut r = request(op, context(Role::Services, id.clone()), "conformance/a.csv");
        r.content_type = Some("text/csv".into());
        outcomes.push(OperationOutcome {
            request: r.clone(),
            size: Some(42),
            sha256: Some("0".repeat(64)),
            duration: Duration::from_micros(120),
            error: None,
        });
        ids.insert(id);
        for (i, e) in failures.iter().enumerate() {
            let id = format!("conformance-observe-{op}-err{i}");
            let r = OperationRequest { ctx: context(Role::Services, id.clone()), ..r.clone() };
            outcomes.push(OperationOutcome { request: r, size: None, sha256: None, duration: Duration::ZERO, error: Some(e.clone()) });
            ids.insert(id);
        }
        for o in &outcomes {
            if let Err(e) = policy.tell(o).await {
                let what = o.error.as_ref().map_or("success".to_string(), |e| format!("failure `{e}`"));
                return Err(format!("`observe` of a {op} {what} failed: {e}"));
            }
        }
    }
    Ok(())
}

fn records_accepted(ledger: &Ledger, before: usize, ids: &BTreeSet<String>) -> Result<(), String> {
    match ledger.verify() {
        Ok(Ok(_)) => {}
        Ok(Err(broken)) => return Err(format!("the ledger no longer verifies: {broken}")),
        Err(e) => return Err(format!("cannot read the ledger: {e}")),
    }
    let entries = ledger.entries().map_err(|e| format!("cannot read the ledger: {e}"))?;
    for entry in entries.iter().skip(before) {
        let r = &entry.record;
        ensure!(!r.action.trim().is_empty(), "ledger record {} has no action", entry.index);
        ensure!(
            ids.contains(&r.request_id),
            "ledger record {} (`{}`) carries request id `{}`, which belongs to no observed outcome: records must say which request they are about",
            entry.index,
            r.action,
            r.request_id
        );
    }
    Ok(())
}
